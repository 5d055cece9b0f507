"""Reproducibility record stored in every metric.json (commit, versions, device, command line) and in every image
record (the commit, whether the tree was clean, and the results version: which code versions give the same
results)."""
from __future__ import annotations

import datetime
import platform
import subprocess
import sys
from pathlib import Path

import torch


# The results version: results_digest() of tests/golden/two_mode_all_stages.json, the records that pin behaviour.
# Two commits with the same digest sample and evaluate alike, so their records may be compared; a study's report
# refuses to compare configurations whose records carry different digests. tests/test_golden.py fails, naming the
# new digest, when the golden records' results change and this line was not updated with them.
RESULTS = "44b14b9a5851"


def results_digest(golden: dict) -> str:
    """A short digest of what the golden records say each particle and image came out as (losses and PSNRs to five
    digits, modes, pruning, the answer), not of the record's layout or its derived labels: renamed keys, added
    fields, the failure kinds and the trust label (judged again from the stored fields by one rule wherever records
    are compared) leave it unchanged."""
    import hashlib
    import json

    def number(v):
        return None if v is None else float(f"{v:.5g}")

    rows = []
    for run in sorted(golden):
        for im in golden[run]:
            answer = im["best_by_prior"]
            rows.append([run, im["index"], im["found"], im["modes"], answer["particle"], answer["mode"],
                         [[q["particle"], q["mode"], q["pruned_at"], number(q["psnr"]),
                           number(q["class_psnr"]), number(q["measurement_loss"])] for q in im["particles"]]])
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:12]


def git_state() -> tuple[str | None, bool | None]:
    """(the tool's commit, whether its tracked files are as committed); (None, None) outside a git checkout."""
    try:
        root = Path(__file__).resolve().parents[1]
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
        if out.returncode != 0:
            return None, None
        return out.stdout.strip(), not dirty.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None, None


def git_commit() -> str | None:
    commit, clean = git_state()
    return None if commit is None else commit + ("" if clean else "-dirty")


def version() -> dict:
    """What an image record names of the code that made it: commit, clean, results (the results version)."""
    commit, clean = git_state()
    return {"commit": commit, "clean": clean, "results": RESULTS}


def device_name(device) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()})"


def provenance(device, argv=None) -> dict:
    return {
        "git_commit": git_commit(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": device_name(device),
        "command": " ".join(argv if argv is not None else sys.argv),
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
