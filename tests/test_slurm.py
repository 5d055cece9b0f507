"""The study on a real SLURM (CI starts a one-node cluster: .ci/slurm_up.sh; skipped, saying why, where none is up):
submitted from another folder than the repository, a second submission while the first is live submits nothing, a
task cancelled mid-shard and the study submitted again redo nothing, the records equal a local run's, and a rerun of
the finished study is a no-op."""
import json
import shutil
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT


def slurm_up() -> str | None:
    """Why SLURM cannot be used here, or None."""
    if shutil.which("sinfo") is None:
        return "no SLURM client on this machine (CI starts one: .ci/slurm_up.sh)"
    out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    if out.returncode != 0 or not {"idle", "mixed", "allocated"} & set(out.stdout.split()):
        return f"no SLURM node is up ({(out.stderr or out.stdout).strip()[:120] or 'sinfo lists none'})"
    return None


pytestmark = pytest.mark.skipif(slurm_up() is not None, reason=str(slurm_up()))
STUDY = ["--model", "two_mode", "--only", "4 independent", "--images", "4", "--seeds", "0", "--shard", "2",
         "sampler.annealing.num_steps=10"]


def study(*args, cwd):
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "study_frontier.py"), *STUDY, *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def wait_for(array: str, timeout: float = 240) -> None:
    end = time.time() + timeout
    while time.time() < end:
        out = subprocess.run(["squeue", "-h", "-r", "-o", "%i"], capture_output=True, text=True).stdout.split()
        if not any(j.split("_")[0] == array for j in out):
            return
        time.sleep(1)
    raise AssertionError(f"array {array} still queued after {timeout} s")


def array_of(stderr: str) -> str:
    line = next(ln for ln in stderr.splitlines() if "submitted" in ln and "array task(s)" in ln)
    return line.split(": ")[1].split("_")[0]


def records(folder):
    drop = ("total_time_s", "phases", "steps", "batch", "provenance")
    out = {}
    for path in sorted(folder.glob("*/metric.json")):
        out[path.parent.name] = [{k: v for k, v in im.items() if k not in drop}
                                 for im in json.loads(path.read_text())["images"]]
    return out


def test_a_cluster_study_from_any_folder_redoes_nothing_and_equals_a_local_run(tmp_path):
    elsewhere = tmp_path / "elsewhere"                      # not the repository: tasks must find the tool anyway
    elsewhere.mkdir()
    first = study("--out", str(tmp_path / "slurm"), "run", "--launcher", "slurm", cwd=elsewhere)
    assert first.returncode == 0, first.stderr[-2000:]
    array = array_of(first.stderr)
    # the first submission's tasks held (suspended or queued) while a second one is made: it submits nothing
    subprocess.run(["scontrol", "suspend", array], capture_output=True)
    again = study("--out", str(tmp_path / "slurm"), "run", "--launcher", "slurm", cwd=elsewhere)
    subprocess.run(["scontrol", "resume", array], capture_output=True)
    assert again.returncode == 0 and "held by a live task" in again.stderr and "nothing submitted" in again.stderr
    # cancel the array once a shard has started (a task killed mid-shard, the others before they ran)
    end = time.time() + 120
    while time.time() < end and not list((tmp_path / "slurm").glob("*/metric.json")):
        time.sleep(0.2)
    subprocess.run(["scancel", array], check=True)
    wait_for(array)
    done = {p.parent.name: p.stat().st_mtime_ns for p in (tmp_path / "slurm").glob("*/metric.json")
            if len(json.loads(p.read_text())["images"]) == 2}
    resumed = study("--out", str(tmp_path / "slurm"), "run", "--launcher", "slurm", cwd=elsewhere)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    if "submitted" in resumed.stderr:
        wait_for(array_of(resumed.stderr))
    kept = {name: (tmp_path / "slurm" / name / "metric.json").stat().st_mtime_ns for name in done}
    assert kept == done                                      # a finished shard is never redone
    local = study("--out", str(tmp_path / "local"), "run", "--launcher", "local", "--workers", "1", cwd=elsewhere)
    assert local.returncode == 0, local.stderr[-2000:]
    assert records(tmp_path / "slurm") == records(tmp_path / "local") and len(records(tmp_path / "local")) == 2
    rerun = study("--out", str(tmp_path / "slurm"), "run", "--launcher", "slurm", cwd=elsewhere)
    assert rerun.returncode == 0 and "every shard of this study is finished: nothing to run" in rerun.stdout


def test_sbatchs_refusal_is_one_line(tmp_path):
    r = study("--out", str(tmp_path / "s"), "run", "--launcher", "slurm", "--slurm", "partition=nope", cwd=tmp_path)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and lines[-1].startswith("error: sbatch refused the array:")
    assert "Traceback" not in r.stderr
    assert "partition" in lines[-1].lower()
