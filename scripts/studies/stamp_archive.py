"""Bring an archived study (docs/frontier/<study>_shards.json.gz) to one code version: its records were written
before image records named their commit, by several commits of one study. Where the golden records of every commit
that touched them in that span give the same results digest as the code now (tracking.provenance.results_digest),
those commits sample and evaluate alike, so each record without a commit is stamped with today's results version
and its derived labels (failure kinds, representability, trust) are judged again by the one rule
(analysis/study_report.judged_again); otherwise nothing is written and the shards must be run again.

    python scripts/studies/stamp_archive.py --model naturalldm --since adf029a
"""
from __future__ import annotations

import argparse
import gzip
import json
import subprocess
from pathlib import Path

import operators
from analysis.study_report import judged_again
from evaluation.trust import loss_sd_of
from tracking.provenance import RESULTS, results_digest

ROOT = Path(__file__).resolve().parents[2]

GOLDEN = "tests/golden/two_mode_all_stages.json"


def golden_digests(since: str) -> dict[str, str]:
    """Every commit from `since` on that changed the golden records (and `since` itself): its results digest."""
    def git(*a):
        return subprocess.run(["git", "-C", str(ROOT), *a], capture_output=True, text=True, check=True).stdout

    commits = [since, *git("log", "--format=%h", f"{since}..HEAD", "--", GOLDEN).split()]
    return {c: results_digest(json.loads(git("show", f"{c}:{GOLDEN}"))) for c in commits}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--since", required=True, help="the first commit that may have written a shard")
    args = ap.parse_args(argv)
    import study_frontier as sf
    from pipeline.study import compose_config

    digests = golden_digests(args.since)
    for c, d in digests.items():
        print(f"{c}: results {d}")
    if set(digests.values()) != {RESULTS}:
        raise SystemExit(f"error: the results changed since {args.since}: run the affected shards again")
    study = sf.build_study(sf.parse(["report", "--model", args.model]))
    task = compose_config(study, []).task.operator
    sigma, fit_factor = float(task.sigma), operators.OPERATORS[task.name].fit_factor
    path = ROOT / "docs" / "frontier" / f"{args.model}_shards.json.gz"
    with gzip.open(path, "rt") as f:
        shards = json.load(f)
    stamped = relabelled = rekinded = 0
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    note = f"written by commits {args.since}..{head}, whose golden records all give results {RESULTS}"
    for shard in shards.values():
        for i, im in enumerate(shard["images"]):
            if (im.get("provenance") or {}).get("commit") is None:
                stamped += (im.get("provenance") or {}).get("results") != RESULTS
                im["provenance"] = {"commit": None, "clean": None, "results": RESULTS, "note": note}
            im["trust"].setdefault("loss_sd", loss_sd_of(im["trust"]["margin"], sigma))
            again = judged_again(im, sigma, fit_factor)
            relabelled += again["trust"]["label"] != im["trust"]["label"]
            rekinded += sum(a.get("failure") != b.get("failure") for a, b in zip(again["particles"], im["particles"]))
            again["trust"]["fit_factor"] = fit_factor
            shard["images"][i] = again
    with gzip.open(path, "wt") as f:
        json.dump(shards, f, separators=(",", ":"))
    print(f"{path}: {stamped} records stamped with results {RESULTS}; judged again at fit factor {fit_factor:g}: "
          f"{relabelled} trust labels and {rekinded} particles' failure kinds changed")


if __name__ == "__main__":
    main()
