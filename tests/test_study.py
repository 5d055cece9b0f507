"""The study: jobs of (configuration, seed, image shard) as ordinary run folders (never redone, continued), split among
workers with no lock (submitit, local here), planned with device-hours before anything runs; and its statistics,
clustered by image, against direct computations."""
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from analysis.paired import compare, difference, rate, wilson

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
FAST = ("sampler.annealing.num_steps=4", "sampler.mcmc.num_steps=2")


def test_wilson_interval_equals_the_formula():
    k, n, z = 7, 20, 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert wilson(k, n) == pytest.approx((centre - half, centre + half), abs=1e-9)


def test_the_interval_is_clustered_by_image():
    """Two seeds that always agree are one measurement twice: the clustered interval must be that of the images
    alone (Student's t over the per-image means), sqrt(2) wider than treating the 2 n measurements as independent
    would make it."""
    from scipy.stats import t

    rng = np.random.default_rng(3)
    n = 60
    per_image = rng.normal(0.0, 1.0, n)
    keys = [(s, i) for s in (0, 1) for i in range(n)]
    a = np.concatenate([per_image, per_image]) + 0.5
    b = np.zeros(2 * n)
    d = difference(keys, a, b, binary=False)
    se_clustered = per_image.std(ddof=1) / math.sqrt(n)
    assert d.half_width == pytest.approx(t.ppf(0.975, n - 1) * se_clustered, rel=1e-12)
    assert d.half_width / 1.96 > 1.3 * a.std(ddof=1) / math.sqrt(2 * n)        # the naive one is sqrt(2) narrower
    assert d.value == pytest.approx(per_image.mean() + 0.5)


def test_one_way_discordance_holds_the_estimate_inside_its_interval():
    """5 or 6 images better, none worse: the audited interval put the estimate at its far end (its bound could not
    pass the observed mean); this one holds the estimate strictly inside. 5 of 5 has sign-test p = 0.0625, so its
    verdict cannot be "better" whatever the interval; no discordant image gives an interval around 0, never a
    point, and never "no difference"."""
    keys = [(0, i) for i in range(50)]
    b = np.zeros(50)
    for k, p_expected in ((5, 0.0625), (6, 0.03125)):
        a = np.zeros(50)
        a[:k] = 1
        d = difference(keys, a, b, binary=True)
        assert d.p == pytest.approx(p_expected)
        assert d.low < d.value < d.high and d.value == pytest.approx(k / 50)
    assert difference(keys, np.r_[np.ones(5), np.zeros(45)], b, binary=True).verdict == "unresolved"
    same = difference(keys, b, b, binary=True)
    assert same.low < 0 < same.high and same.verdict == "unresolved"


def test_the_sign_test_counts_images_not_measurements():
    """Four seeds of 8 images, each image better in all four: 32 discordant measurements but 8 images, so p is the
    sign test's 2 / 2^8, not McNemar's 2 / 2^32."""
    keys = [(s, i) for s in range(4) for i in range(40)]
    a = np.array([1.0 if i < 8 else 0.0 for s in range(4) for i in range(40)])
    d = difference(keys, a, np.zeros(160), binary=True)
    assert d.p == pytest.approx(2 / 2 ** 8)
    r = rate(keys, np.ones(160))                                  # every image found: not a point at 100 %
    assert r.value == 1.0 and r.high == 1.0 and 0.9 < r.low < 1.0


def test_four_verdicts():
    """better/worse need the interval and the test (Holm-adjusted where adjusted) to agree; equivalent needs the
    whole interval inside the declared margin; everything else is unresolved. The halving row of the natural study
    once read "-2.7 [-5.9, -0.4], p = 0.11: worse"."""
    from analysis.paired import VERDICTS, Difference

    assert Difference(-0.027, -0.059, -0.004, "", 0.11).verdict == "unresolved"
    assert Difference(-0.027, -0.059, -0.004, "", 0.01).verdict == "worse"
    assert Difference(0.05, 0.01, 0.09, "", 0.02).verdict == "better"
    assert Difference(0.05, 0.01, 0.09, "", 0.02, p_adjusted=0.08).verdict == "unresolved"
    assert Difference(0.01, -0.02, 0.04, "", 0.03).verdict == "unresolved"
    assert Difference(0.01, -0.02, 0.02, "", 0.40).verdict == "unresolved"          # no margin declared
    assert Difference(0.01, -0.02, 0.02, "", 0.40, margin=0.03).verdict == "equivalent"
    assert Difference(0.01, -0.02, 0.031, "", 0.40, margin=0.03).verdict == "unresolved"
    assert Difference(0.0, -0.708, 0.708, "", 1.0, margin=0.03).verdict == "unresolved"   # 3 images: not "none"
    assert {Difference(0.0, lo, hi, "", p, margin=0.03).verdict for lo, hi, p in
            ((-0.01, 0.01, 1), (0.01, 0.02, 0.01), (-0.02, -0.01, 0.01), (-1, 1, 1))} == set(VERDICTS)


def test_holm_and_the_detectable_difference():
    from analysis.paired import Difference, holm

    diffs = [Difference(0, -1, 1, "", p) for p in (0.01, 0.04, 0.03)]
    holm(diffs)
    assert [d.p_adjusted for d in diffs] == pytest.approx([0.03, 0.06, 0.06])
    d = Difference(0.0, -0.05, 0.05, "", 1.0)
    assert d.detectable == pytest.approx(0.05 * (1.959964 + 0.841621) / 1.959964, rel=1e-6)


def test_a_zero_bound_never_reads_as_an_exclusion():
    from analysis.paired import Difference, formatted

    text = formatted(Difference(0.02, 0.0, 0.05, "", 0.2), True)
    assert text.startswith("+2.0 [0.0, +5.0]") and "+0.0" not in text
    assert formatted(Difference(0.02, -0.0002, 0.05, "", 0.2), True).startswith("+2.0 [−0.02, +5.0]")


def _record(seed, index, found, right, psnr=20.0):
    parts = [{"mode": "0" if found else "fail", "pruned_at": None, "psnr": psnr, "class_psnr": psnr + 1}]
    return {"seed": seed, "index": index, "found": found, "best_by_prior": {"mode": "0" if right else "180"},
            "best_by_loss": {"mode": "0" if found else "fail"}, "particles": parts,
            "compute_total": {"tflop": 2.0}, "compute": {"tflop": 1.0}}


def test_compare_pairs_by_measurement_and_marks_a_row_missing_some():
    ref = [_record(s, i, True, i % 2 == 0) for s in (0, 1) for i in range(5)]
    mine = [_record(s, i, i != 3, True) for s in (0, 1) for i in range(4)]        # 8 of the reference's 10
    c = compare(mine, ref)
    assert (c.n, c.images, c.complete) == (8, 4, False)
    assert c.rates["found"].value == pytest.approx(6 / 8) and c.diffs["found"].value == pytest.approx(-2 / 8)
    # chosen right: the reference is right on images 0 and 2, mine on all four: images 1 and 3 discordant, one way
    assert c.diffs["chosen_right"].value == pytest.approx(0.5) and c.diffs["chosen_right"].p == pytest.approx(0.5)
    assert c.means["tflop"] == 2.0 and c.means["best_psnr"] == 21.0              # every call; up to symmetry
    assert compare(ref, ref).complete


def test_holm_adjusts_within_each_family_of_named_comparisons():
    """A comparison named in a family of its own leaves the other family's adjusted p-values as they were; in the
    same family it raises them (Holm's step-down over one more p)."""
    from analysis.study_report import named_rows

    ref = [_record(s, i, True, i % 3 == 0) for s in (0, 1) for i in range(12)]
    recs = {"ref": ref, "a": [_record(s, i, True, i % 3 != 2) for s in (0, 1) for i in range(12)],
            "b": [_record(s, i, True, True) for s in (0, 1) for i in range(12)],
            "c": [_record(s, i, True, i % 2 == 0) for s in (0, 1) for i in range(12)]}
    two = [("a", "a", "ref"), ("b", "b", "ref")]

    def adjusted(named):
        rows, _ = named_rows(recs, named, None)
        return {name: c.diffs["chosen_right"].p_adjusted for name, c, _ in rows}
    alone = adjusted(two)
    apart = adjusted([*two, ("c", "c", "ref", "baseline")])
    together = adjusted([*two, ("c", "c", "ref")])
    assert apart["a"] == alone["a"] and apart["b"] == alone["b"]
    assert together["a"] > alone["a"]
    assert apart["c"] == adjusted([("c", "c", "ref")])["c"]


def _study(tmp_path, name="s"):
    from pipeline.study import Configuration, Study

    configs = (Configuration("2 independent", "independent", ("particle_num=2", *FAST)),
               Configuration("1 independent", "independent", ("particle_num=1", *FAST)))
    return Study("two_mode", configs, (0, 1), 3, 4, 2, tmp_path / name, images_per_batch=2)


def _strip(recs):
    drop = ("total_time_s", "phases", "steps", "batch")      # times and memory: the machine's, not the result's
    return {k: [{f: v for f, v in r.items() if f not in drop} for r in rs] for k, rs in recs.items()}


def test_two_local_workers_give_the_records_of_one(tmp_path):
    """A two-worker submitit_local study of two configurations: the same records as one worker's, every job run
    once, and nothing redone when launched again."""
    from pipeline.cluster import launch
    from pipeline.study import assign, records

    one, two = _study(tmp_path, "one"), _study(tmp_path, "two")
    cost = {c: 1.0 for c in one.configurations}
    jobs = one.jobs()
    assert len(jobs) == 2 * 2 * 2                                  # configurations x seeds x shards of 2 images
    split = assign(jobs, cost, 3)
    assert sorted(j.name for g in split for j in g) == sorted(j.name for j in jobs)       # each job exactly once
    launch(one, "local", 1, cost)
    launch(two, "local", 2, cost)
    a, b = records(one), records(two)
    assert [(r["seed"], r["index"]) for r in a["2 independent"]] == [(0, 3), (0, 4), (0, 5), (0, 6), (1, 3), (1, 4),
                                                                      (1, 5), (1, 6)]
    assert json.dumps(_strip(a), sort_keys=True) == json.dumps(_strip(b), sort_keys=True)
    stamps = {p: p.stat().st_mtime_ns for p in two.out.glob("*/metric.json")}
    assert len(stamps) == 8
    launch(two, "local", 2, cost)                                  # all done: no job is started again
    assert {p: p.stat().st_mtime_ns for p in two.out.glob("*/metric.json")} == stamps
    # archived and restored elsewhere (a study outliving its machine): the same compact records, every shard done
    from dataclasses import replace

    from pipeline.study import archive, compact, finished, restore

    assert archive(two, tmp_path / "shards.json.gz") == 8
    moved = replace(two, out=tmp_path / "restored")
    assert restore(moved, tmp_path / "shards.json.gz") == 8 and restore(moved, tmp_path / "shards.json.gz") == 0
    assert all(finished(moved, j) == j.count for j in moved.jobs())
    assert records(moved) == {k: [{"seed": r["seed"], **compact(r)} for r in rs] for k, rs in records(two).items()}


def test_the_full_size_plan_needs_no_gpu_and_refuses_a_big_launch(tmp_path, capsys):
    """The plan of a full-size FFHQ study from the cost model alone: four independent Langevin particles cost
    4 x (50 x 50 decoder VJPs + 50 x 2 UNet rows) + 4 decodes + the ELBO's 4 x 2 x 128 UNet rows and 8 encodes per
    image; GPU-hours at the documented rate. Above the threshold, `run` needs --yes and starts nothing."""
    import models
    import study_frontier as sf
    from pipeline.resolve import block
    from pipeline.run import cost_per_row
    from pipeline.study import RATES, compose_config, plan

    args = ["--model", "ffhq256ldm", "--only", "4 independent", "2 independent", "--out", str(tmp_path / "ffhq")]
    study = sf.build_study(sf.parse(["plan", *args]))
    assert [c.label for c in study.configurations] == ["4 independent", "2 independent"]
    per_row = cost_per_row(block(compose_config(study, []).model, models.SETTINGS))

    def expected(n):
        return (n * (2500 * per_row["decoder_vjp"] + 100 * per_row["unet"]) + n * per_row["decoder_forward"]
                + n * 2 * 128 * per_row["unet"] + 2 * n * per_row["encoder"])
    p = plan(study)
    assert [r["tflop"] for r in p.rows] == pytest.approx([expected(4), expected(2)], rel=1e-9)
    assert p.rows[0]["hours"] == pytest.approx(400 * expected(4) / RATES["cuda"] / 3600, rel=1e-9)
    assert p.unit == "GPU-hours"
    with pytest.raises(SystemExit) as e:
        sf.main(["run", *args])
    assert e.value.code == 2 and "add --yes" in capsys.readouterr().err
    assert not (tmp_path / "ffhq").exists()


def test_the_plan_counts_rows_from_two_short_loops_exactly():
    """Without a stage whose rows depend on the path, the plan's rows are affine in the MCMC steps: loops of 1 and 2
    steps give those of 4 exactly (pruning's schedule, pixel repulsion's VJPs, resampling's draws); with refine on,
    its stopping optimiser makes the plan run the whole loop."""
    from pipeline.study import _count_rows, _stand_in, stand_in_rows

    base = _stand_in()[0].copy()
    over = {"particle_num": 8, "pruning_step": [600, 300], "pruning_keep": [4, 2], "repulsion_scale": 0.3,
            "resampling_interval": 3, "seed": 3}
    cfg = base.copy()
    for k, v in over.items():
        cfg[k] = v
    cfg.repulsion.features, cfg.repulsion.pixel_size = "pixel", 8
    cfg.sampler.annealing.num_steps, cfg.sampler.mcmc.num_steps = 10, 4
    whole, final = _count_rows(cfg)
    assert stand_in_rows(cfg) == (whole, final) and final == 2 and whole["decoder_vjp"] > 0
    cfg.refine_step, cfg.refine.max_iters = 300, 3
    assert stand_in_rows(cfg) == _count_rows(cfg)


def test_the_committed_study_restores_into_any_folder_and_reports_the_same(tmp_path, capsys):
    """The digits power study's archive, restored with --out elsewhere (the archive is named by the study, not the
    folder), reports the committed tables exactly; a study without an archive is one line, exit 2."""
    import study_frontier as sf
    from tests.conftest import ROOT

    sf.main(["--model", "digits32ldm", "--out", str(tmp_path / "elsewhere"), "restore"])
    assert "restored 88 shard(s)" in capsys.readouterr().out      # 6 configurations x 14 shards + ReSample 4
    sf.main(["--model", "digits32ldm", "--out", str(tmp_path / "elsewhere"), "report",
             "--save", str(tmp_path / "r.json")])
    committed = json.loads((ROOT / "docs" / "frontier" / "digits32ldm.json").read_text())
    again = json.loads((tmp_path / "r.json").read_text())
    assert again["outcomes"] == committed["outcomes"] and again["named"] == committed["named"]
    with pytest.raises(SystemExit) as e:
        sf.main(["--model", "ffhq256ldm", "--out", str(tmp_path / "none"), "restore"])
    assert e.value.code == 2 and "no archive at" in capsys.readouterr().err


def test_the_half_width_plan_recovers_the_pilot_and_scales_with_images():
    """components() splits the paired differences' variance into between images and between seeds (checked against
    a direct computation); the images needed for the pilot's own half-width are the pilot's, and half the half-width
    needs about four times the images."""
    from analysis.power import components, half_width, images_needed

    rng = np.random.default_rng(5)
    n, m = 80, 4
    effect = rng.normal(0, 0.3, n)
    a = [{"seed": s, "index": i, "chosen_right": float(effect[i] + rng.normal(0, 0.5) > 0)}
         for s in range(m) for i in range(n)]
    b = [{"seed": s, "index": i, "chosen_right": float(rng.random() < 0.5)} for s in range(m) for i in range(n)]
    between, within, images, seeds = components(a, b, "chosen_right")
    d = np.array([[x["chosen_right"] - y["chosen_right"] for x, y in zip(a[s * n:(s + 1) * n], b[s * n:(s + 1) * n])]
                  for s in range(m)])                                       # seeds x images
    assert (images, seeds) == (n, m)
    assert within == pytest.approx(d.var(axis=0, ddof=1).mean())
    assert between == pytest.approx(max(d.mean(0).var(ddof=1) - within / m, 0))
    now = half_width(between, within, n, m)
    assert images_needed(between, within, m, now) == n
    assert images_needed(between, within, m, now / 2) == pytest.approx(4 * n, rel=0.05)
    assert images_needed(between, within, 1, now) > n                      # fewer seeds, more images


def test_a_report_lists_versions_and_refuses_to_compare_different_results(tmp_path, capsys):
    """Records of two results versions are not compared (one line says why); the versions are listed; the trust
    labels in the JSON are judged again, not read from the records."""
    from analysis.study_report import incomparable, versions_table

    ref = [{**_record(s, i, True, True), "provenance": {"commit": "a" * 40, "clean": True, "results": "r1"}}
           for s in (0, 1) for i in range(5)]
    other = [{**r, "provenance": {"commit": "b" * 40, "clean": False, "results": "r2"}} for r in ref]
    same = [{**r, "provenance": {"commit": "c" * 40, "clean": True, "results": "r1"}} for r in ref]
    assert "r1, r2" in incomparable(other, ref) and incomparable(same, ref) is None
    assert incomparable([{k: v for k, v in r.items() if k != "provenance"} for r in ref], ref) is None
    lines = versions_table({"x": ref, "y": other})
    assert any(line.startswith("- aaaaaaaaaaaa (clean), results version r1: 10 records") for line in lines)
    assert any(line.startswith("- bbbbbbbbbbbb (modified tree), results version r2") for line in lines)


def test_parse_metrics_refuses_a_margin_out_of_range(capsys):
    import parse_metrics

    assert parse_metrics.main(["results", "--margin", "0"]) == 2
    assert "--margin is a number of points" in capsys.readouterr().err


def test_slurm_options_in_sbatchs_spelling_or_one_line():
    from core.errors import ConfigError
    from pipeline.cluster import slurm_parameters

    assert slurm_parameters(["partition=debug", "cpus-per-task=4", "mem=7.5G", "time=01:30:00", "gres=gpu:1",
                             "account=abc"]) == {
        "slurm_partition": "debug", "slurm_cpus_per_task": 4, "slurm_mem": "7680M", "slurm_time": 90,
        "slurm_gres": "gpu:1", "slurm_account": "abc"}
    assert slurm_parameters(["mem_gb=7.5", "timeout_min=600", "time=2-00:00:00"]) == {
        "slurm_mem": "7680M", "slurm_time": 2880}                    # submitit's names too; the last time wins
    for bad, words in (("partiton=debug", "partiton is not an option"), ("time=soon", "not a valid time"),
                       ("mem=lots", "not a valid mem"), ("cpus-per-task=four", "not a valid cpus-per-task"),
                       ("partition", "give KEY=VALUE")):
        with pytest.raises(ConfigError, match=words):
            slurm_parameters([bad])


def test_a_failed_task_is_named_with_its_log(tmp_path):
    import pickle

    from pipeline.cluster import failed_tasks
    from pipeline.study import Study

    folder = tmp_path / "s" / "submitit" / "7_1"
    folder.mkdir(parents=True)
    with open(folder / "7_1_0_result.pkl", "wb") as f:
        pickle.dump(("error", "Traceback (most recent call last):\n  ...\nModuleNotFoundError: No module named "
                              "'pipeline'\n"), f)
    with open(folder / "7_0_0_result.pkl", "wb") as f:
        pickle.dump(("success", 2), f)
    study = Study("two_mode", (), (0,), 0, 1, 1, tmp_path / "s")
    assert failed_tasks(study) == [f"task 7_1_0 failed: ModuleNotFoundError: No module named 'pipeline' (log: "
                                   f"{folder / '7_1_0_log.err'})"]


def test_the_verb_may_stand_anywhere_and_a_data_range_is_checked_before_launch(capsys):
    import study_frontier as sf

    args = sf.parse(["--seeds", "0", "plan", "--model", "digits32ldm"])
    assert args.what == "plan" and args.seeds == [0]
    with pytest.raises(SystemExit) as e:
        sf.main(["--model", "digits32ldm", "--start", "296", "--images", "4", "--seeds", "0", "run"])
    assert e.value.code == 2 and "not all in the data set, which holds 297" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        sf.main(["--model", "naturalldm", "plan", "repulsion_scale=0.5"])
    assert e.value.code == 2 and "would change the configuration '4 repulsive 0.3" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:                       # --help without a verb: the usage page, not an error
        sf.main(["--help"])
    assert e.value.code == 0 and "{plan,run,report,archive,restore}" in capsys.readouterr().out.splitlines()[0]


def test_your_own_configurations_join_the_study_against_its_reference(tmp_path, capsys):
    import study_frontier as sf

    mine = tmp_path / "mine.yaml"
    mine.write_text('- label: "4 repulsive 0.5"\n  overrides: [particle_num=4, repulsion_scale=0.5]\n')
    study = sf.build_study(sf.parse(["--model", "digits32ldm", "--configs-file", str(mine), "plan",
                                     "--only", "4 repulsive 0.5", "4 independent"]))
    assert [c.label for c in study.configurations] == ["4 independent", "4 repulsive 0.5"]
    assert ("yours: 4 repulsive 0.5 against 4 independent", "4 repulsive 0.5", "4 independent") in \
        sf.named_comparisons(study)
    for text, words in (("- label: x\n", "entry 1 is not a list"), ("[: bad", "cannot be read as YAML"),
                        ('- label: "4 independent"\n  overrides: [particle_num=4]\n', "already")):
        mine.write_text(text)
        with pytest.raises(SystemExit) as e:
            sf.main(["--model", "digits32ldm", "--configs-file", str(mine), "plan"])
        assert e.value.code == 2 and words in capsys.readouterr().err
