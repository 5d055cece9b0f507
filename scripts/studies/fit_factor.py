"""An operator's fit factor (operators/<name>.py fit_factor): how far above the noise margin a right particle's loss
still lies, measured on a mini LDM's decoded truths. Runs the model's preset under the task (an ordinary run folder
per seed under --out; a finished one is read, not redone), then: the smallest f (steps of 0.005) within which 97.5 %
of the right final particles' losses over the noise margin fall on the tuning images (even-numbered), and on the
held-out images (odd-numbered) the share of right particles within it and how many answers would read `no fit`
although some final particle is right.

    OMP_NUM_THREADS=1 python scripts/studies/fit_factor.py --model digits32ldm --task gaussian_deblur --images 24 --seeds 0
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from evaluation.trust import COVER, right_loss_ratios, smallest_factor
from pipeline.schema import compose
from pipeline.stacks import stack
from tracking.metric_file import read_json

ROOT = Path(__file__).resolve().parents[2]


def run_seed(model: str, task: str, images: int, seed: int, out: Path) -> list[dict]:
    import torch

    from pipeline.run import run

    name = f"{model}_{task}_s{seed}_n{images}"
    path = out / name / "metric.json"
    if not path.exists() or len(read_json(path).get("images", [])) < images:
        torch.set_num_threads(1)
        run(compose(*stack(model), f"task={task}", f"seed={seed}", f"num_eval_images={images}",
                    f"save_dir={out}", f"name={name}", "save_images=false", "device=cpu"))
    return read_json(path)["images"]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="digits32ldm")
    ap.add_argument("--task", default="gaussian_deblur")
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "fit_factor")
    args = ap.parse_args(argv)
    images = [im for s in args.seeds for im in run_seed(args.model, args.task, args.images, s, args.out)]
    tuning = [im for im in images if im["index"] % 2 == 0]
    held = [im for im in images if im["index"] % 2 == 1]
    r = right_loss_ratios(tuning)
    factor = smallest_factor(r)
    h = right_loss_ratios(held)
    lost = sum(1 for im in held if any(p["mode"] != "fail" for p in im["particles"] if p.get("pruned_at") is None)
               and not any(p["measurement_loss"] <= factor * im["trust"]["margin"] for p in im["particles"]
                           if p.get("pruned_at") is None))
    print(f"{args.model}, task={args.task}, seeds {args.seeds}, images 0-{args.images - 1}: right final particles' "
          f"loss / noise margin on the tuning images: median {np.median(r):.3f}, max {r.max():.3f} ({len(r)} "
          f"particles; within 1.0: {100 * (r <= 1).mean():.1f} %)")
    print(f"fit factor {factor:.3f}: the smallest f with >= {100 * COVER:.1f} % of them within f x the margin")
    print(f"held-out images: {len(h)} right particles, {100 * (h <= factor + 1e-12).mean():.1f} % within it; "
          f"{lost} of {len(held)} answers would read `no fit` with a right final particle")


if __name__ == "__main__":
    main()
