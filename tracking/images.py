"""Image outputs of one measurement: ground truth, a view of y, the tool's answer, every particle and a labelled
grid."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torchvision.utils import save_image

from core.tensors import rot180, to_unit

TILE = 128            # grid tiles are upscaled to at least this many pixels: a 32 px benchmark image stays legible
LINE_H = 13           # one caption line
LABEL_LINES = 5       # the caption strip under each tile: up to five lines (long ones wrap)
COLOURS = {"right": (0, 128, 0), "wrong": (200, 0, 0)}     # a verdict's colour; every other line is black


def _font():
    """matplotlib's DejaVu Sans (a dependency already): Pillow's built-in bitmap font drops spaces ("as sampled"
    rendered as "assampled"); the built-in one where matplotlib's file is missing."""
    try:
        import matplotlib

        return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"), 10)
    except (ImportError, OSError):
        return ImageFont.load_default()


def _wrap(line: str, font, width: int) -> list[str]:
    """A caption line broken at spaces so that each piece fits the tile's width."""
    out, current = [], ""
    for word in line.split(" "):
        trial = f"{current} {word}".strip()
        if current and font.getlength(trial) > width:
            out.append(current)
            current = word
        else:
            current = trial
    return out + [current]


def legible(img: torch.Tensor) -> torch.Tensor:
    """(C, H, W) upscaled by the smallest whole factor (nearest: every pixel a square) that makes it at least TILE
    px: the answer is for looking at; the particles' PNGs keep the model's resolution."""
    factor = -(-TILE // min(img.shape[-2:]))
    return img if factor <= 1 else img.repeat_interleave(factor, -2).repeat_interleave(factor, -1)


def measurement_view(y: torch.Tensor) -> torch.Tensor:
    """log(1 + |y|) scaled to [0, 1] per image, for looking at, not for measuring."""
    v = torch.log1p(y.float().clamp_min(0))
    lo = v.flatten(1).min(1).values.view(-1, 1, 1, 1)
    hi = v.flatten(1).max(1).values.view(-1, 1, 1, 1)
    return (v - lo) / (hi - lo).clamp_min(1e-12)


def labelled_grid(tiles: list[torch.Tensor], labels: list[tuple[str, ...]]) -> Image.Image:
    """One row of (3, H, W) [0, 1] tiles, each upscaled (nearest) to >= TILE px and captioned with its lines,
    wrapped to the tile's width (a verdict line, "right" or "wrong", in its colour)."""
    size = max(TILE, tiles[0].shape[-1])
    font = _font()
    pad = 4
    canvas = Image.new("RGB", (len(tiles) * (size + pad) + pad, size + LABEL_LINES * LINE_H + 2 * pad), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (tile, lines) in enumerate(zip(tiles, labels)):
        t = torch.nn.functional.interpolate(tile[None], size=(size, size), mode="nearest")[0]
        img = Image.fromarray((t.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
        x = pad + i * (size + pad)
        canvas.paste(img, (x, pad))
        shown = [(piece, COLOURS.get(line, "black")) for line in lines if line for piece in _wrap(line, font, size)]
        for j, (piece, colour) in enumerate(shown[:LABEL_LINES]):
            draw.text((x, pad + size + 2 + LINE_H * j), piece, fill=colour, font=font)
    return canvas


def save_image_outputs(out_dir, index, gt, y, x, particle_ids, rows, dropped=(), answer=None, trust=None):
    """images/NNNNN/: gt.png, measurement.png, particle_<id>.png (pruned_particle_<id>.png for pruned ones),
    answer.png (the tool's answer: the chosen particle turned the way the prior prefers; `answer` is the record's
    best_by_prior), answer_rotated.png (the other orientation, where `trust` says the prior cannot choose it) and
    grid.png (GT, |y|, the answer with its trust label, every final particle with its mode and PSNR)."""
    out = Path(out_dir) / "images" / f"{index:05d}"
    shutil.rmtree(out, ignore_errors=True)            # this image is being redone: no PNG of an earlier run stays
    out.mkdir(parents=True)
    save_image(to_unit(gt.float().cpu()), out / "gt.png")
    save_image(measurement_view(y).cpu(), out / "measurement.png")
    for pid, xi in zip(particle_ids, x):
        save_image(to_unit(xi.float().cpu()), out / f"particle_{pid}.png")
    for pids, xd in dropped:
        for pid, xi in zip(pids, xd):
            save_image(to_unit(xi.float().cpu()), out / f"pruned_particle_{pid}.png")
    view = torch.nn.functional.interpolate(measurement_view(y)[:1].cpu(), size=gt.shape[-2:])[0]
    tiles = [to_unit(gt[0].float().cpu()), view.expand(3, -1, -1)]
    labels = [("ground truth",), ("log |y|",)]
    if answer is not None:
        xa = x[particle_ids.index(answer["particle"])]
        xa = rot180(xa) if answer["rotated"] else xa
        save_image(legible(to_unit(xa.float().cpu())), out / "answer.png")
        label = trust["label"] if trust else None
        if label == "orientation undetermined":          # the prior's choice is a guess: the other one beside it
            save_image(legible(to_unit(rot180(xa).float().cpu())), out / "answer_rotated.png")
        verdict = "right" if answer["mode"] == "0" else "wrong"
        tiles.append(to_unit(xa.float().cpu()))
        labels.append((f"ANSWER: particle {answer['particle']}", ("turned 180 deg, " if answer["rotated"] else "")
                       + f"{answer['psnr']:.1f} dB", verdict, f"trust: {label}" if label else ""))
    tiles += [to_unit(xi.float().cpu()) for xi in x]
    by_id = {r["particle"]: r for r in rows}
    for pid in particle_ids:
        r = by_id[pid]
        mode = f"fail ({r['failure']})" if r["mode"] == "fail" and r.get("failure") else \
            ("fail" if r["mode"] == "fail" else f"{r['mode']} deg")
        # a 180-degree particle is judged against the rotated ground truth, which it matches
        psnr = f"{r['psnr_180']:.1f} dB vs rot. GT" if r["mode"] == "180" else f"{r['psnr']:.1f} dB"
        mark = ("the answer, as sampled",) if answer is not None and pid == answer["particle"] else ()
        labels.append((f"particle {pid}: {mode}", psnr) + mark)
    labelled_grid(tiles, labels).save(out / "grid.png")
