"""How well does a particle's measurement loss at step k predict whether it ends as a failure? The measurement
behind the resampling window (docs/resampling.md), from the per-step losses every metric.json already holds.

    python scripts/studies/loss_predicts_failure.py results/natural_p4/metric.json [more metric.json ...]

Per step: the within-image AUC (over pairs of one image's final particles, one that succeeds and one that fails
up to the measurement's symmetries: how often the success has the lower loss at that step; 0.5 = no better than a
coin), the pairs it rests on, and how often the image's lowest-loss particle at that step ends as a success
(among images with at least one success).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def per_step(images: list[dict]) -> list[dict]:
    rows = {}
    for im in images:
        final = {p["particle"]: p["mode"] != "fail" for p in im["particles"] if p["pruned_at"] is None}
        if not any(final.values()):
            continue
        for s in im["steps"]:
            loss = {pid: v for pid, v in zip(s["particle_ids"], s["loss"]) if pid in final and v is not None}
            r = rows.setdefault(s["k"], {"k": s["k"], "t": s["t"], "wins": 0.0, "pairs": 0, "best_ok": 0, "images": 0})
            good = [loss[p] for p in loss if final[p]]
            bad = [loss[p] for p in loss if not final[p]]
            r["pairs"] += len(good) * len(bad)
            r["wins"] += sum(1.0 if g < b else 0.5 if g == b else 0.0 for g in good for b in bad)
            if loss:
                r["images"] += 1
                r["best_ok"] += final[min(loss, key=loss.get)]
    out = []
    for k in sorted(rows):
        r = rows[k]
        out.append({"k": k, "t": r["t"], "auc": r["wins"] / r["pairs"] if r["pairs"] else None, "pairs": r["pairs"],
                    "lowest_loss_succeeds": r["best_ok"] / r["images"] if r["images"] else None})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("metric", nargs="+")
    ap.add_argument("--every", type=int, default=5, help="print every n-th step")
    args = ap.parse_args()
    images = [im for path in args.metric for im in json.loads(Path(path).read_text())["images"]]
    rows = per_step(images)
    print(f"{len(images)} images; within-image AUC of the loss at step k for final success")
    print("| k | t | AUC | pairs | lowest-loss particle succeeds |\n|---|---|---|---|---|")
    for r in rows:
        if r["k"] % args.every == 0 or r["k"] == rows[-1]["k"]:
            auc = "–" if r["auc"] is None else f"{r['auc']:.2f}"
            best = "–" if r["lowest_loss_succeeds"] is None else f"{100 * r['lowest_loss_succeeds']:.0f} %"
            print(f"| {r['k']} | {r['t']} | {auc} | {r['pairs']} | {best} |")


if __name__ == "__main__":
    main()
