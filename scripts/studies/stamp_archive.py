"""Bring an archived study (docs/frontier/<study>_shards.json.gz) to one code version: its records were written
before image records named their commit, by several commits of one study. Where the golden records of every commit
that touched them in that span give the same results digest as the code now (tracking.provenance.results_digest),
those commits sample and evaluate alike, so each record is stamped with today's results version (its commit left
unrecorded) and its trust label is judged again by the one rule at the declared settings; otherwise nothing is
written and the shards must be run again.

    python scripts/studies/stamp_archive.py --model naturalldm --since adf029a
"""
from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))

from analysis.study_report import trust_label  # noqa: E402
from evaluation.trust import loss_sd_of  # noqa: E402
from tracking.provenance import RESULTS, results_digest  # noqa: E402

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
    study = sf.build_study(sf.parser().parse_intermixed_args(["report", "--model", args.model]))
    sigma = float(compose_config(study, []).task.operator.sigma)
    path = ROOT / "docs" / "frontier" / f"{args.model}_shards.json.gz"
    with gzip.open(path, "rt") as f:
        shards = json.load(f)
    stamped = relabelled = 0
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    note = f"written by commits {args.since}..{head}, whose golden records all give results {RESULTS}"
    for shard in shards.values():
        for im in shard["images"]:
            if "provenance" not in im:
                im["provenance"] = {"commit": None, "clean": None, "results": RESULTS, "note": note}
                stamped += 1
            t = im["trust"]
            t.setdefault("loss_sd", loss_sd_of(t["margin"], sigma))
            label = trust_label(im, sigma)
            relabelled += label != t["label"]
            t["label"] = label
    with gzip.open(path, "wt") as f:
        json.dump(shards, f, separators=(",", ":"))
    print(f"{path}: {stamped} records stamped with results {RESULTS}, {relabelled} trust labels changed")


if __name__ == "__main__":
    main()
