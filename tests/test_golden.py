"""Behaviour is pinned: the two-mode benchmark with every stage on (repulsion, pruning and branching, refinement,
two images per batch, per-step metrics, Langevin and HMC) gives the records of tests/golden/ again, timing and
provenance aside (float64; equal up to round-off across machines: on one machine the records repeat bit for bit,
but a CPU with other vector units (AVX-512 vs AVX2) rounds differently and the HMC dynamics amplify that to
1.1e-7 relative, measured 2026-12-02; changing repulsion_scale 0.3 -> 0.301 moves 526 values by more than
RTOL, the largest by 1.2e-3)."""
import json
import math

import pytest

from tests.golden.make import FILE, records

RTOL = 1e-5


def differences(a, b, path="") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b), key=str)
                for d in (differences(a[k], b[k], f"{path}.{k}") if k in a and k in b else [f"{path}.{k}: missing"])]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} vs {len(b)} entries"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    if isinstance(a, float) and isinstance(b, float):
        same = a == b or (math.isnan(a) and math.isnan(b)) or abs(a - b) <= RTOL * max(1.0, abs(b))
        return [] if same else [f"{path}: {a!r} vs {b!r}"]
    return [] if a == b else [f"{path}: {a!r} vs {b!r}"]


@pytest.mark.usefixtures("one_thread")
def test_records_equal_the_golden_file():
    golden = json.loads(FILE.read_text())
    diff = differences(records(), golden)
    assert not diff, f"{len(diff)} differences, e.g. " + "; ".join(diff[:8])


def test_the_results_version_is_that_of_the_golden_records():
    """Records name their results version (tracking.provenance.RESULTS) so that a study compares only records of
    code that samples alike; it must be the digest of the golden records as committed. A deliberate change of the
    records that changes results (python tests/golden/make.py) must update RESULTS in the same commit."""
    from tracking.provenance import RESULTS, results_digest

    digest = results_digest(json.loads(FILE.read_text()))
    assert digest == RESULTS, f"the golden records' results changed: set tracking.provenance.RESULTS = {digest!r}"


def test_the_results_digest_ignores_layout_and_labels_but_not_results():
    from tracking.provenance import results_digest

    golden = json.loads(FILE.read_text())
    base = results_digest(golden)
    relabelled = json.loads(FILE.read_text())
    for im in relabelled["prune"]:
        im["trust"]["label"] = "no fit"
        im["renamed_section"] = im.pop("refine", None)
    assert results_digest(relabelled) == base
    moved = json.loads(FILE.read_text())
    moved["prune"][0]["particles"][0]["measurement_loss"] *= 1.001
    assert results_digest(moved) != base
