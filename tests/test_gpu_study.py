"""scripts/studies/gpu_study.sh --dry-run: the GPU study's plan scaled down on the CPU (the natural mini LDM, the six
configurations and their report, 2 images, one seed, 5 annealing steps)."""
import json
import os
import subprocess
import sys

from tests.conftest import ROOT


def test_the_gpu_study_dry_run_reports_every_named_comparison_of_both_models(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable, OUT=str(tmp_path))
    r = subprocess.run(["bash", "scripts/studies/gpu_study.sh", "--dry-run"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    sys.path.insert(0, str(ROOT / "scripts"))
    import study_frontier

    for model in ("naturalldm",):
        report = json.loads((tmp_path / f"{model}.json").read_text())
        six = {name for name, mine, *_ in study_frontier.COMPARISONS if mine != study_frontier.RESAMPLE_LABEL}
        assert set(report["named"]) == six
        for label, rows in report["outcomes"].items():          # every configuration: 2 images x seed 0
            assert sorted((o["seed"], o["index"]) for o in rows) == [(0, 0), (0, 1)], label
        assert (tmp_path / f"{model}.png").is_file()
        assert len(list((tmp_path / model).glob("*_s0_i0-1/metric.json"))) == 6
    assert r.stdout.count("| Exp 3: 4 -> 2 at t = 200 against 2 from the start |") == 1
