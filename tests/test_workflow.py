"""Experiment workflow: sweep scripts, parse_metrics tables, shard merging, resume, provenance, SLURM launcher."""
from __future__ import annotations

import csv
import io
import json
import os
import runpy
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import parse_metrics  # noqa: E402
from readout import load, tables  # noqa: E402
import pipeline.run as pipeline_run  # noqa: E402
import pipeline.run_folder as pipeline_run_folder  # noqa: E402
from tests.conftest import compose as compose_default  # noqa: E402
from tracking.metric_file import read_json  # noqa: E402

# tiny sampler: K = 5 steps gives t = 1000, 800, 600, 400, 200, so the t = 200 triggers fire at the last step
TINY = ["sampler.annealing.num_steps=5", "sampler.mcmc.num_steps=2", "refine.max_iters=10"]
EXPERIMENTS = ["exp0_baseline", "exp1_repulsion", "exp2_pruning", "exp3_two_particles", "exp4_optimization", "exp6_resampling",
               "exp5_final"]
# keys whose values are measurements of the machine, not results
VOLATILE = {"time_s", "total_time_s", "peak_memory_mb", "memory_mb", "phase_time_s", "phase_peak_memory_mb",
            "time_s_per_image", "refine_time_s", "refine_time_s_per_image", "provenance"}


def env():
    e = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    e.pop("RESULTS_DIR", None)
    return e


def script(name, *args, **kw):
    return subprocess.run(["bash", str(ROOT / "scripts" / f"{name}.sh"), *map(str, args)], cwd=ROOT, env=env(),
                          capture_output=True, text=True, **kw)


def compose(*overrides):
    return compose_default(*TINY, "save_images=false", *overrides)


def strip_volatile(obj):
    if isinstance(obj, dict):
        return {k: strip_volatile(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [strip_volatile(v) for v in obj]
    return obj


pytestmark = pytest.mark.usefixtures("one_thread")


def run_in_process(line: str) -> None:
    """Run a script's printed `+ python posterior_sample.py ...` line as __main__ in this interpreter."""
    argv = shlex.split(line[2:])
    assert argv[1] == "posterior_sample.py"
    saved = sys.argv
    sys.argv = [str(ROOT / argv[1]), *argv[2:]]
    try:
        runpy.run_path(str(ROOT / argv[1]), run_name="__main__")
    finally:
        sys.argv = saved


# ---------------------------------------------------------------- scripts

@pytest.fixture(scope="module")
def script_runs(tmp_path_factory):
    """Every experiment script in --demo mode on 1 image.

    exp0 runs end to end as a subprocess; the others (to spare five ~5 s interpreter starts on a small machine)
    print their command with --dry-run and it runs here through posterior_sample's entry point, unchanged.
    """
    results = tmp_path_factory.mktemp("results")
    p = script("exp0_baseline", 1, "--demo", "--results", results, *TINY, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    for exp in EXPERIMENTS[1:]:
        p = script(exp, 1, "--demo", "--results", results, *TINY, "--dry-run")
        assert p.returncode == 0, p.stderr
        line = [ln for ln in p.stderr.splitlines() if ln.startswith("+ ")][0]    # exp5: the setting (its ablation
        run_in_process(line)                                                     # is tested below)
    return results


def test_scripts_chain_like_the_plan(script_runs):
    """--like RUN_DIR: exp4 refines the setting of the run it is given (here exp2's: repulsion and pruning), and
    exp5 runs its setting, then without pruning, without optimisation and as four independent particles (the
    ablation), each a command."""
    (exp2,) = script_runs.joinpath("exp2_pruning").glob("*/config.yaml")
    p = script("exp4_optimization", 1, "--demo", "--like", exp2.parent, "--dry-run")
    assert p.returncode == 0, p.stderr
    (line,) = [ln for ln in p.stderr.splitlines() if ln.startswith("+ ")]
    args = line.split()
    for setting in ("repulsion_scale=0.3", "pruning_step=200", "pruning_keep=2", "pruning.mode=prune"):
        assert setting in args
    assert args.index("pruning_step=200") < args.index("--refine_step") and \
        args[args.index("--refine_step") + 1] == "200"                       # exp4's own flag comes after
    p = script("exp5_final", 2, "--demo", "--like", exp2.parent, "--dry-run")
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("+ ")]
    assert len(lines) == 4 and lines[1].endswith("--pruning_step=-1") and lines[2].endswith("--refine_step=-1")
    assert lines[3].endswith("--particle_num=4 --repulsion_scale=0 --resampling_interval=0 --pruning_step=-1 "
                             "--refine_step=-1")                           # DAPS's four independent runs
    p = script("exp4_optimization", 1, "--demo", "--like", script_runs / "nothing", "--dry-run")
    assert p.returncode == 2 and "no config.yaml there" in p.stderr


def test_scripts_usage_and_bad_arguments():
    p = script("exp1_repulsion", "-h")
    assert p.returncode == 0 and "usage: scripts/exp1_repulsion.sh" in p.stdout and "--start" in p.stdout
    for args, message in [(["ten"], "positive integer"), (["0"], "positive integer"),
                          (["--data", "cifar"], "--data cifar is not one of"), (["--start", "-3"], "--start must be"),
                          (["--start"], "--start needs a value")]:
        p = script("exp0_baseline", *args)
        assert p.returncode == 2, args
        assert p.stderr.startswith("error: ") and message in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_scripts_dry_run_settings_and_pass_through(tmp_path):
    p = script("exp2_pruning", 10, "--start", 20, "--data", "ffhq", "--results", tmp_path, "--dry-run",
               "--repulsion_scale", "0.7", "seed=7")
    assert p.returncode == 0, p.stderr
    (line,) = [ln for ln in p.stderr.splitlines() if ln.startswith("+ ")]
    assert "model=ffhq256ldm sampler=langevin data=ffhq" in line
    assert "--pruning_step 200 --pruning_keep 2" in line and "data.start_index=20" in line
    assert "--num_eval_images 10" in line and f"save_dir={tmp_path}/exp2_pruning" in line
    # extra arguments come after the script's settings, so they win
    assert line.index("--repulsion_scale 0") < line.index("--repulsion_scale 0.7") < line.index("seed=7")
    assert not tmp_path.joinpath("exp2_pruning").exists()  # dry run
    p = script("exp5_final", "--demo", "--dry-run")
    # both data sets collapse to the demo: the setting, then without pruning, without optimisation, four independent
    assert "--num_eval_images 100" in p.stderr and p.stderr.count("+ ") == 4
    p = script("exp5_final", "--dry-run")                  # the final runs: DAPS's test sets, Langevin
    assert "sampler=langevin data=test-imagenet" in p.stderr and "sampler=langevin data=test-ffhq" in p.stderr
    assert "name=${data.name}_langevin_p" in p.stderr
    p = script("exp0_baseline", 10, "--sampler", "hmc", "--data", "test-imagenet", "--dry-run")
    (line,) = [ln for ln in p.stderr.splitlines() if ln.startswith("+ ")]
    assert "model=imagenet256ldm sampler=hmc data=test-imagenet" in line and "name=${data.name}_hmc_p" in line
    p = script("exp4_optimization", "--demo", "latent", 2, "--dry-run")
    (line,) = [ln for ln in p.stderr.splitlines() if ln.startswith("+ ")]
    assert "model=two_mode_latent sampler=two_mode_latent data=two_mode_latent" in line
    assert "--num_eval_images 2" in line
    for form in (["--demo", "digits"], ["--demo=digits"]):
        p = script("exp3_two_particles", *form, 3, "--dry-run")
        (line,) = [ln for ln in p.stderr.splitlines() if ln.startswith("+ ")]
        assert "model=digits32ldm sampler=digits32ldm data=digits" in line and "--num_eval_images 3" in line
        assert "name=${data.name}_p" in line                  # one sampler: no sampler tag, as the benchmarks
    for exp in EXPERIMENTS:                                  # every script takes the natural-image mini LDM
        p = script(exp, "--demo", "natural", 2, "--dry-run")
        line = [ln for ln in p.stderr.splitlines() if ln.startswith("+ ")][0]      # exp5: then its ablation
        assert p.returncode == 0 and "model=naturalldm sampler=naturalldm data=natural" in line, exp
    p = script("exp0_baseline", "--sampler", "euler", "--dry-run")
    assert p.returncode == 2 and "--sampler must be langevin or hmc" in p.stderr
    p = script("exp0_baseline", "--dry-run", "--multirun", "seed=1,2")
    (line,) = [ln for ln in p.stderr.splitlines() if ln.startswith("+ ")]
    assert line.split()[2:4] == ["posterior_sample.py", "--multirun"] and "_job${hydra:job.num}" in line


def test_every_script_and_the_comparison_table(script_runs, tmp_path):
    runs = {exp: sorted(script_runs.joinpath(exp).rglob("metric.json")) for exp in EXPERIMENTS}
    assert all(len(f) == 1 for f in runs.values()), runs
    metric = {exp: read_json(f[0]) for exp, f in runs.items()}
    assert runs["exp1_repulsion"][0].parent.name == "two_mode_p4_rep0.3_n1_s0"
    assert runs["exp0_baseline"][0].parent.name == "two_mode_p4_n1_s0"

    # the settings each experiment stands for reached the run
    cfg = {exp: m["config"] for exp, m in metric.items()}
    assert cfg["exp0_baseline"]["repulsion_scale"] == 0 and cfg["exp0_baseline"]["pruning_step"] == -1
    assert cfg["exp1_repulsion"]["repulsion_scale"] > 0 and cfg["exp1_repulsion"]["particle_num"] == 4
    assert cfg["exp2_pruning"]["pruning_step"] == 200 and cfg["exp2_pruning"]["pruning_keep"] == 2
    assert cfg["exp3_two_particles"]["particle_num"] == 2 and cfg["exp3_two_particles"]["pruning_step"] == -1
    assert cfg["exp4_optimization"]["refine_step"] == 200 and cfg["exp5_final"]["refine_step"] == -1
    # the frontier's verdict: four independent particles in the final run
    assert cfg["exp5_final"]["pruning_step"] == -1 and cfg["exp5_final"]["particle_num"] == 4
    assert cfg["exp6_resampling"]["resampling_interval"] == 5 and cfg["exp6_resampling"]["repulsion_scale"] == 0
    # the plan's chain: exp2 prunes exp1's setting, exp3 starts it with two particles
    assert cfg["exp2_pruning"]["repulsion_scale"] == cfg["exp3_two_particles"]["repulsion_scale"] == \
        cfg["exp1_repulsion"]["repulsion_scale"] == 0.3
    assert cfg["exp4_optimization"]["refine"]["eps"] == "auto"                 # the best refine variant
    assert all(c["model"]["name"] == "two_mode" and c["num_eval_images"] == 1 for c in cfg.values())

    # reproducibility record
    for m in metric.values():
        prov = m["provenance"]
        assert prov["torch"] == torch.__version__ and prov["device"].startswith("cpu")
        assert "posterior_sample.py" in prov["command"] and "particle_num=" in prov["command"]
        assert prov["git_commit"] is None or len(prov["git_commit"].split("-")[0]) == 40

    # Markdown table from the command line: one row per experiment, cells formatted from the stored summary
    p = subprocess.run([sys.executable, "parse_metrics.py", str(script_runs), "--all"], cwd=ROOT, env=env(),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().split("\n\n")[0].splitlines()       # the table; then the success curve and the trust list
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {r[0]: dict(zip(header, r)) for r in ([c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:])}
    assert sorted(rows) == sorted(f"{exp}/{f[0].parent.name}" for exp, f in runs.items())
    for exp, m in metric.items():
        row, s = rows[f"{exp}/{runs[exp][0].parent.name}"], m["summary"]
        best = [max(p["psnr"] for p in im["particles"] if p["pruned_at"] is None) for im in m["images"]]
        assert row["images"] == str(len(m["images"])) == "1"
        assert row["DAPS best-of-N PSNR"] == f"{statistics.fmean(best):.2f} ± {s['best_of_n_psnr_std']:.2f}"
        ssim = [max(p["ssim"] for p in im["particles"] if p["pruned_at"] is None) for im in m["images"]]
        assert row["DAPS best-of-N SSIM"] == f"{statistics.fmean(ssim):.3f} ± {s['best_of_n_ssim_std']:.3f}"
        assert row["answer PSNR"] == f"{m['images'][0]['best_by_prior']['psnr']:.2f}"
        assert row["upright found (oracle)"] == f"{100 * float(m['images'][0]['gt_mode_found']):.0f} %"
        assert row["chosen right"] == f"{100 * float(m['images'][0]['best_by_prior']['mode'] == '0'):.0f} %"
        assert row["explore time s"] == f"{m['images'][0]['phases']['explore']['time_s']:.2f}"
        assert row["DAPS best-of-N LPIPS"] == ("" if s["best_of_n_lpips_mean"] is None else
                                f"{s['best_of_n_lpips_mean']:.3f} ± {s['best_of_n_lpips_std']:.3f}")
    assert rows[f"exp3_two_particles/{runs['exp3_two_particles'][0].parent.name}"]["particles"] == "2"
    pruned = rows[f"exp2_pruning/{runs['exp2_pruning'][0].parent.name}"]
    assert pruned["particles"] == "2" and "pruning" in metric["exp2_pruning"]["images"][0]
    # the refine stage's counts appear only where it ran (a missing block is a blank cell)
    opt = metric["exp4_optimization"]["images"][0]["refine"]
    assert rows[f"exp4_optimization/{runs['exp4_optimization'][0].parent.name}"]["refine iters/image"] == \
        f"{opt['total_iterations']:.1f}"
    assert rows[f"exp0_baseline/{runs['exp0_baseline'][0].parent.name}"]["refine iters/image"] == ""

    # CSV: every number equals the run's own summary block exactly
    table = list(csv.DictReader(io.StringIO(tables.format_csv(load.load_experiments([script_runs])))))
    assert len(table) == len(EXPERIMENTS)
    for row in table:
        s = read_json(script_runs / row["experiment"] / "metric.json")["summary"]
        for key in ("images", "particles", "best_of_n_psnr_mean", "best_of_n_psnr_std", "mean_psnr",
                    "particle_psnr_std", "best_of_n_ssim_mean", "best_of_n_lpips_mean", "success_rate", "both_modes_rate", "fail_rate", "chosen_psnr_mean",
                    "prior_success_rate", "search_success_rate", "particle_success_rate", "tflop_per_image",
                    "time_s_per_image", "refine_iterations_per_image", "refine_time_s_per_image"):
            assert (row[key] == "") if s[key] is None else (float(row[key]) == s[key]), key
        for ph, t in s["phase_time_s"].items():
            assert float(row[f"time_{ph}_s"]) == t
            assert float(row[f"peak_memory_{ph}_mb"]) == s["phase_peak_memory_mb"][ph]

    # LaTeX and plots
    assert parse_metrics.main([str(script_runs), "--format", "latex", "--out", str(tmp_path)]) == 0
    tex = tmp_path.joinpath("table.tex").read_text()
    assert tex.count("\\\\") == len(EXPERIMENTS) + 1 and "exp0\\_baseline" in tex
    for name in ("time_per_phase", "pairwise_distance", "psnr_distribution", "memory_per_step"):
        assert tmp_path.joinpath(f"{name}.png").stat().st_size > 1000
    assert not tmp_path.joinpath("memory_per_phase.png").exists()    # CPU runs: peak RSS is not per phase
    assert len(list(tmp_path.joinpath("grids").rglob("00000.png"))) == len(EXPERIMENTS)


def test_script_resume_with_another_config_refuses(script_runs, capsys):
    metric_file = next(script_runs.joinpath("exp0_baseline").rglob("metric.json"))
    before = read_json(metric_file)
    p = script("exp0_baseline", 1, "--demo", "--results", script_runs, *TINY, "sampler.mcmc.num_steps=3",
               "resume=true", "--dry-run")
    (line,) = [ln for ln in p.stderr.splitlines() if ln.startswith("+ ")]
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:  # through Hydra's main unchanged: the interpreter exits 2, no traceback
        run_in_process(line)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "run with other settings (sampler.mcmc.num_steps)" in err[0], err
    assert read_json(metric_file) == before


# ---------------------------------------------------------------- shards and resume (in process)

@pytest.fixture(scope="module")
def unsharded(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    pipeline_run.run(compose(f"save_dir={root}", "name=full", "num_eval_images=2"))
    return root


def test_two_shards_merge_to_the_unsharded_table(unsharded, tmp_path):
    for start in (0, 1):
        pipeline_run.run(compose(f"save_dir={tmp_path}", f"name=shard{start}", "num_eval_images=1",
                                 f"data.start_index={start}"))
    warnings = []
    (merged,) = load.load_experiments([tmp_path / "shard1", tmp_path / "shard0"], warn=warnings.append)
    (full,) = load.load_experiments([unsharded / "full"], warn=warnings.append)
    assert warnings == [] and len(merged["runs"]) == 2 and merged["label"].endswith("/shard")
    assert [im["index"] for im in merged["images"]] == [0, 1]
    assert strip_volatile(merged["images"]) == strip_volatile(full["images"])
    rows = [next(csv.DictReader(io.StringIO(tables.format_csv([e])))) for e in (merged, full)]
    for row in rows:
        for key in ("experiment", "runs", *(k for k in row if "time" in k or "memory" in k)):
            row.pop(key)
    assert rows[0] == rows[1] and rows[0]["images"] == "2"

    # an image run twice and an image missing are reported, not silently merged
    warnings.clear()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "metric.json").write_text((unsharded / "full" / "metric.json").read_text())
    (dup,) = load.load_experiments([tmp_path / "full", tmp_path / "shard1"], warn=warnings.append)
    assert len(dup["images"]) == 2 and len(warnings) == 1 and "image 1 appears in" in warnings[0]
    gap = read_json(tmp_path / "shard1" / "metric.json")
    gap["config"]["num_eval_images"] = 3  # as if the shard 1-3 had stopped after its first image
    (tmp_path / "gap").mkdir()
    (tmp_path / "gap" / "metric.json").write_text(json.dumps(gap))
    warnings.clear()
    load.load_experiments([tmp_path / "shard0", tmp_path / "gap"], warn=warnings.append)
    assert len(warnings) == 1 and "missing image(s) 2-3" in warnings[0]
    # --group none keeps shards apart
    assert len(load.load_experiments([tmp_path / "shard0", tmp_path / "shard1"], "none")) == 2


def test_interrupted_run_keeps_finished_images_and_resumes_to_the_same_result(unsharded, tmp_path, monkeypatch):
    real, calls = pipeline_run.run_batch, []

    def interrupt_at_second_image(*args, **kwargs):
        indices = [index for index, _, _ in args[2]]
        calls.extend(indices)
        if 1 in indices:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline_run, "run_batch", interrupt_at_second_image)
    cfg = compose(f"save_dir={tmp_path}", "name=full", "num_eval_images=2")
    with pytest.raises(KeyboardInterrupt):
        pipeline_run.run(cfg)
    partial = read_json(tmp_path / "full" / "metric.json")
    assert [im["index"] for im in partial["images"]] == [0] and partial["summary"]["images"] == 1

    calls.clear()
    monkeypatch.setattr(pipeline_run, "run_batch",
                        lambda *a, **k: calls.extend(index for index, _, _ in a[2]) or real(*a, **k))
    resumed = pipeline_run.run(compose(f"save_dir={tmp_path}", "name=full", "num_eval_images=2", "resume=true"))
    assert calls == [1]  # image 0 came from the file
    on_disk = read_json(tmp_path / "full" / "metric.json")
    assert on_disk["images"][0] == partial["images"][0]
    assert len(on_disk["provenance"]["earlier_runs"]) == 1
    reference = read_json(unsharded / "full" / "metric.json")
    for m in (on_disk, reference):
        m["config"].pop("save_dir"), m["config"].pop("resume")
    assert strip_volatile(on_disk) == strip_volatile(reference)
    assert resumed["summary"]["images"] == 2

    # resuming a finished run computes nothing
    calls.clear()
    pipeline_run.run(compose(f"save_dir={tmp_path}", "name=full", "num_eval_images=2", "resume=true"))
    assert calls == []


def test_resume_with_another_config_refuses_in_process(unsharded):
    """Library code raises the project's error; only the entry point turns it into exit 2 (tested as a
    subprocess in test_safety)."""
    from core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"holds 2 image\(s\) run with other settings \(seed\)"):
        pipeline_run.run(compose(f"save_dir={unsharded}", "name=full", "num_eval_images=2", "resume=true", "seed=3"))


def test_config_diff_names_nested_keys():
    a = {"seed": 1, "sampler": {"mcmc": {"lr": 1e-4, "num_steps": 2}}, "x": [1, 2]}
    b = {"seed": 1, "sampler": {"mcmc": {"lr": 2e-4, "num_steps": 2}}, "x": [1, 2], "y": 0}
    assert pipeline_run_folder.config_diff(a, b) == ["sampler.mcmc.lr", "y"]
    assert pipeline_run_folder.config_diff(a, a) == []


def test_group_label_and_keys():
    label = load.group_label
    assert label([{"label": "e/d_p4_n10_s0"}, {"label": "e/d_p4_n10_s10"}]) == "e/d_p4_n10"
    assert label([{"label": "e/d_p4_n1_s0_job0"}, {"label": "e/d_p4_n1_s1_job1"}]) == "e/d_p4_n1"
    assert label([{"label": "e/a"}]) == "e/a"
    base = {"seed": 1, "name": "a", "num_eval_images": 5, "data": {"start_index": 0, "name": "x"}}
    shard = {**base, "name": "b", "num_eval_images": 3, "data": {"start_index": 5, "name": "x"}}
    other = {**base, "seed": 2}                       # another seed: more measurements of the same experiment
    changed = {**base, "particle_num": 8}
    key = load.experiment_key
    assert key(base) == key(shard) == key(other) != key(changed)
    assert key(base, ["particle_num"]) == key(changed, ["particle_num"])
    assert key(base, folder="exp1") != key(shard, folder="exp2")


# ---------------------------------------------------------------- cluster launcher

def test_slurm_launcher_requeues_and_logs_beside_the_runs():
    """The SLURM launcher's settings that the workflow doc promises: a job that times out is requeued three times,
    one GPU per job, and sbatch's logs go under the experiment's save_dir."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="optional extra hydra-submitit-launcher")
    from hydra import compose as hydra_compose, initialize_config_dir

    from pipeline.schema import register

    register()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = hydra_compose("default", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                                                  "save_dir=/scratch/runs"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.partition == "gpu" and launcher.gpus_per_node == 1
    assert launcher.max_num_timeout == 3 and "requeued" in (ROOT / "docs" / "workflow.md").read_text()
    assert cfg.hydra.sweep.dir == "/scratch/runs" and launcher.submitit_folder == "/scratch/runs/.submitit/%j"


def test_submitit_two_shard_multirun_merges_to_the_unsharded_table(tmp_path):
    """The cluster path, run locally: an exp script's --multirun over two shards through hydra-submitit-launcher's
    submitit_local (each shard a separate job process), merged by parse_metrics into the unsharded run's table."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="hydra-submitit-launcher is in requirements")
    p = script("exp0_baseline", 1, "--demo", "--results", tmp_path / "sharded", "--multirun",
               "hydra/launcher=submitit_local", "data.start_index=0,1", *TINY, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    shards = sorted((tmp_path / "sharded" / "exp0_baseline").glob("*/metric.json"))
    assert [read_json(f)["config"]["data"]["start_index"] for f in shards] == [0, 1]
    assert (tmp_path / "sharded" / "exp0_baseline" / ".submitit").is_dir()           # the jobs' own logs
    # and nothing else there: no empty `%j` folder; each shard's row printed on the console after the sweep
    assert not (tmp_path / "sharded" / "exp0_baseline" / ".submitit" / "%j").exists()
    for f in shards:
        assert f"{f.parent}:" in p.stdout
        assert p.stdout.split(f"{f.parent}:")[1].splitlines()[2].strip().startswith(
            str(read_json(f)["images"][0]["index"]))
    p = script("exp0_baseline", 2, "--demo", "--results", tmp_path / "whole", *TINY, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    found = []
    for root in (tmp_path / "sharded", tmp_path / "whole"):
        (e,) = load.load_experiments([root])
        (row,) = csv.DictReader(io.StringIO(tables.format_csv([e])))
        found.append({k: v for k, v in row.items() if k not in ("experiment", "runs") and "time" not in k
                      and "memory" not in k})
    assert found[0] == found[1] and found[0]["images"] == "2"


def test_tables_read_up_to_symmetry_name_their_memory_and_show_the_success_curve(script_runs):
    """Best PSNR and the spread up to symmetry beside DAPS's unturned ones, mode coverage, a memory header that says
    what it measured (a CPU run: the process's lifetime peak RSS), the independent success curve."""
    experiments = load.load_experiments([script_runs / "exp0_baseline"])
    (e,) = experiments
    finals = [[p for p in im["particles"] if p["pruned_at"] is None] for im in e["images"]]
    s = e["summary"]
    assert s["best_psnr_sym_mean"] == pytest.approx(statistics.fmean(max(p["class_psnr"] for p in ps)
                                                                     for ps in finals))
    assert s["best_psnr_sym_mean"] >= s["best_of_n_psnr_mean"] - 1e-9           # a member of the class is closer
    assert sum(s["mode_shares"].values()) == pytest.approx(1.0)
    text = tables.format_markdown(experiments)
    header = text.splitlines()[0]
    assert "best PSNR up to symmetry" in header and "DAPS best-of-N PSNR" in header and "particles 180 deg" in header
    assert "explore peak MB (CPU process peak RSS, lifetime)" in header
    curve = text.split("Independent success curve")[1].splitlines()
    row = next(ln for ln in curve if ln.startswith(f"| {e['label']} |"))
    p = s["particle_success_rate"]
    assert row.endswith(f"| {100 * (1 - (1 - p) ** 8):.0f} % |")


def test_a_run_from_before_a_setting_existed_continues_at_its_default(tmp_path):
    """An earlier run's config lacks a setting added since: at its declared default the run is continued (the
    earlier one ran as the default does); at another value it is refused, naming the setting."""
    from omegaconf import OmegaConf

    from core.errors import ConfigError

    cfg = compose(f"save_dir={tmp_path}", "name=r")
    resolved = OmegaConf.to_container(cfg, resolve=True)
    old = json.loads(json.dumps(resolved))
    del old["trust"]["fit_factor"]
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "metric.json").write_text(json.dumps({"config": old, "images": [{"index": 0}]}))
    images, _, note = pipeline_run_folder.previous_run(cfg, tmp_path / "r", resolved)
    assert len(images) == 1 and note.startswith("continuing")
    cfg.trust.fit_factor = 1.2
    with pytest.raises(ConfigError, match="trust.fit_factor"):
        pipeline_run_folder.previous_run(cfg, tmp_path / "r", OmegaConf.to_container(cfg, resolve=True))
    renamed = json.loads(json.dumps(resolved))         # a run made when refine was called optimization
    renamed["optimization_step"], renamed["optimization"] = renamed.pop("refine_step"), renamed.pop("refine")
    (tmp_path / "r" / "metric.json").write_text(json.dumps({"config": renamed, "images": [{"index": 0}]}))
    cfg.trust.fit_factor = resolved["trust"]["fit_factor"]
    images, _, note = pipeline_run_folder.previous_run(cfg, tmp_path / "r", resolved)
    assert len(images) == 1 and note.startswith("continuing")
