"""Can the prior tell a learned model's own test images from their 180° rotations? On decoded ground truths D(E(x)):
how often the ELBO log-ratio prefers the upright image (per number of ELBO levels and repeat), and how well the first
stage reconstructs each truth and its rotation (the loss's own leak of the orientation: a rotation the model cannot
make fits y worse).

    python scripts/orientation_on_truths.py --model naturalldm --images 50 --evals 32,128,512 --repeats 2
    python scripts/orientation_on_truths.py --model naturalldm --write      # store the check with the model

Prints a Markdown table; one CPU thread (full-size models: the GPU). docs/orientation.md reports its output. --write
measures the ELBO at the run's own number of levels (orientation.elbo_evals) on the model's test images (up to 100)
and stores the share beside the checkpoint (orientation_check.json), where every run reads it: below
trust.threshold an answer's orientation is `orientation undetermined` (evaluation/trust.py).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from core.tensors import rot180
from evaluation.failures import reconstruct, truths as decoded_truths
from evaluation.orientation import prior_log_ratio
from pipeline.build import build
from pipeline.validate import validate
from pipeline.schema import compose
from pipeline.stacks import FULL_SIZE, STACKS, stack


@torch.no_grad()
def measure(model_name: str, images: int, evals: list[int], repeats: int, overrides=()) -> dict:
    device = "device=auto" if model_name in FULL_SIZE else "device=cpu"
    cfg = compose(*stack(model_name), "data.ground_truth=decoded", device, "save_images=false",
                  f"num_eval_images={images}", *overrides)
    validate(cfg)
    model, _, dataset = build(cfg)
    dev = next(iter(model.parameters())).device
    raw = torch.stack([dataset[i][1] for i in range(len(dataset))]).float().to(dev)
    truths = decoded_truths(model, raw, cfg.data)[0]           # as the studies use them
    latents = model.encode(truths)                              # once, not per number of levels and repeat
    upright = {}
    for n in evals:
        ocfg = cfg.orientation.copy()
        ocfg.method, ocfg.elbo_evals = "elbo", n
        upright[n] = [float((torch.cat([prior_log_ratio(model, latents[i:i + 25], ocfg,
                                                        torch.Generator().manual_seed(1000 * r + i), truths[i:i + 25])
                                        for i in range(0, len(truths), 25)]) > 0).double().mean())
                      for r in range(repeats)]
    return {"images": len(truths), "upright": upright, "cfg": cfg,
            "psnr": {"truth": reconstruct(model, truths)[1].tolist(),
                     "rotation": reconstruct(model, rot180(truths))[1].tolist()}}


def write_check(model_name: str, images: int, repeats: int) -> Path:
    """Measure the share at the run's own number of ELBO levels and store it beside the model's checkpoint."""
    from analysis.paired import wilson
    from evaluation.trust import check_path

    cfg = compose(*stack(model_name))
    evals = int(cfg.orientation.elbo_evals)
    r = measure(model_name, images, [evals], repeats)
    path = check_path(r["cfg"].model)
    if path is None:
        raise SystemExit(f"error: {model_name} has no checkpoint to store the check beside")
    n = r["images"] * repeats
    share = statistics.fmean(r["upright"][evals])
    check = {"upright": share, "upright_95ci": list(wilson(round(share * n), n)), "images": r["images"],
             "repeats": repeats, "per_repeat": r["upright"][evals], "elbo_evals": evals,
             "data": str(r["cfg"].data.name), "ground_truth": "decoded", "date": time.strftime("%Y-%m-%d"),
             "command": "python scripts/orientation_on_truths.py " + " ".join(sys.argv[1:])}
    path.write_text(json.dumps(check, indent=1) + "\n")
    print(f"{model_name}: the ELBO prefers the upright image in {100 * share:.0f} % of {r['images']} decoded test "
          f"images x {repeats} repeats ({evals} levels); stored in {path}")
    return path


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", nargs="+", default=["naturalldm", "digits32ldm"], choices=sorted(STACKS))
    ap.add_argument("--images", type=int, default=50)
    ap.add_argument("--evals", default="32,128,512")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--write", action="store_true", help="store the check beside each model's checkpoint "
                                                          "(--images defaults to 100 then)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.write:
        for name in args.model:
            write_check(name, args.images if "--images" in (argv or sys.argv) else 100, args.repeats)
        return
    evals = [int(e) for e in args.evals.split(",")]
    print("| model | decoded truths | ELBO prefers upright (" + ", ".join(f"{n} levels" for n in evals) +
          "; each repeat) | re-encoded truth PSNR, median [min] | re-encoded rotation PSNR, median [min] |")
    print("|---|---|---|---|---|")
    for name in args.model:
        r = measure(name, args.images, evals, args.repeats)
        up = "; ".join("/".join(f"{100 * v:.0f} %" for v in r["upright"][n]) for n in evals)
        cell = lambda v: f"{statistics.median(v):.1f} [{min(v):.1f}]"  # noqa: E731
        print(f"| {name} | {r['images']} | {up} | {cell(r['psnr']['truth'])} dB | {cell(r['psnr']['rotation'])} dB |",
              flush=True)


if __name__ == "__main__":
    main()
