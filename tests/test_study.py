"""The study: jobs of (configuration, seed, image shard) as ordinary run folders (never redone, continued), split among
workers with no lock (submitit, local here), planned with device-hours before anything runs; and its statistics,
clustered by image, against direct computations."""
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from analysis.paired import compare, difference, mcnemar, rate, wilson

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
FAST = ("sampler.annealing.num_steps=4", "sampler.mcmc.num_steps=2")


def test_wilson_interval_equals_the_formula():
    k, n, z = 7, 20, 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert wilson(k, n) == pytest.approx((centre - half, centre + half), abs=1e-9)


def test_exact_mcnemar_is_a_binomial_test_of_the_discordant_pairs():
    a = np.array([1] * 10 + [0] * 2 + [1] * 5 + [0] * 3)
    b = np.array([0] * 10 + [1] * 2 + [1] * 5 + [0] * 3)
    assert mcnemar(a, b) == pytest.approx(2 * sum(math.comb(12, i) for i in range(3)) / 2 ** 12)


def test_the_interval_is_clustered_by_image():
    """Two seeds that always agree are one measurement twice: the clustered interval must be as wide as that of the
    images alone (analytic clustered standard error), sqrt(2) wider than treating the 2 n measurements as
    independent would make it."""
    rng = np.random.default_rng(3)
    n = 60
    per_image = rng.normal(0.0, 1.0, n)
    keys = [(s, i) for s in (0, 1) for i in range(n)]
    a = np.concatenate([per_image, per_image]) + 0.5
    b = np.zeros(2 * n)
    d = difference(keys, a, b, binary=False)
    assert d.method.startswith("cluster bootstrap")
    se_clustered = per_image.std(ddof=1) / math.sqrt(n)
    assert d.half_width / 1.96 == pytest.approx(se_clustered, rel=0.12)
    assert d.half_width / 1.96 > 1.3 * a.std(ddof=1) / math.sqrt(2 * n)        # the naive one is sqrt(2) narrower
    assert d.value == pytest.approx(per_image.mean() + 0.5)


def test_one_way_discordance_without_significance_gives_an_interval_holding_zero():
    """5 images better, none worse: exact McNemar p = 2 / 2^5 = 0.0625 > 0.05, so the interval must contain 0 (the
    percentile bootstrap claimed [+1, +10] here); with 6 of 6 (p = 0.031) it must not."""
    keys = [(0, i) for i in range(50)]
    b = np.zeros(50)
    for k, p_expected, holds_zero in ((5, 0.0625, True), (6, 0.03125, False)):
        a = np.zeros(50)
        a[:k] = 1
        d = difference(keys, a, b, binary=True)
        assert d.p == pytest.approx(p_expected) and d.p == pytest.approx(mcnemar(a, b))
        assert (d.low <= 0 <= d.high) is holds_zero and d.method == "exact conditional over images"
        assert d.value == pytest.approx(k / 50) and d.high == pytest.approx(k / 50)
    same = difference(keys, b, b, binary=True)                  # no discordant image: never a zero-width interval
    assert same.low < 0 < same.high and same.high == pytest.approx(1 - 0.025 ** (1 / 50))


def test_the_sign_test_counts_images_not_measurements():
    """Four seeds of 8 images, each image better in all four: 32 discordant measurements but 8 images, so p is the
    sign test's 2 / 2^8, not McNemar's 2 / 2^32."""
    keys = [(s, i) for s in range(4) for i in range(40)]
    a = np.array([1.0 if i < 8 else 0.0 for s in range(4) for i in range(40)])
    d = difference(keys, a, np.zeros(160), binary=True)
    assert d.p == pytest.approx(2 / 2 ** 8)
    r = rate(keys, np.ones(160))                                  # every image found: exact over the 40 images
    assert r.method == "Clopper-Pearson over images" and r.low == pytest.approx(0.025 ** (1 / 40))


def test_a_verdict_needs_the_interval_and_the_exact_test_to_agree():
    """The halving row of the natural study once read "-2.7 [-5.9, -0.4], p = 0.11: worse": the BCa interval
    excluded 0 while the sign test over images did not. Such a difference is unresolved; better/worse need both."""
    from analysis.paired import Difference

    assert Difference(-0.027, -0.059, -0.004, "", 0.11).verdict.startswith("unresolved")
    assert Difference(-0.027, -0.059, -0.004, "", 0.01).verdict == "worse"
    assert Difference(0.05, 0.01, 0.09, "", 0.02).verdict == "better"
    assert Difference(0.01, -0.02, 0.04, "", 0.03).verdict.startswith("unresolved")
    assert Difference(0.01, -0.02, 0.04, "", 0.40).verdict == "no difference"


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
    import study_frontier as sf
    from pipeline.run import cost_per_row
    from pipeline.study import RATES, compose_config, plan

    args = ["--model", "ffhq256ldm", "--only", "4 independent", "8 -> 4 -> 2 -> 1 halving at t=600,400,200",
            "--out", str(tmp_path / "ffhq")]
    study = sf.build_study(sf.parser().parse_intermixed_args(["plan", *args]))
    assert [c.label for c in study.configurations] == ["4 independent", "8 -> 4 -> 2 -> 1 halving at t=600,400,200"]
    per_row = cost_per_row(compose_config(study, []).model)
    expected = (4 * (2500 * per_row["decoder_vjp"] + 100 * per_row["unet"]) + 4 * per_row["decoder_forward"]
                + 4 * 2 * 128 * per_row["unet"] + 8 * per_row["encoder"])
    p = plan(study)
    assert p.rows[0]["tflop"] == pytest.approx(expected, rel=1e-9)
    assert p.rows[0]["hours"] == pytest.approx(400 * expected / RATES["cuda"] / 3600, rel=1e-9)
    assert p.unit == "GPU-hours" and p.rows[1]["tflop"] > expected                  # 8 -> 4 -> 2 -> 1 costs more
    with pytest.raises(SystemExit) as e:
        sf.main(["run", *args])
    assert e.value.code == 2 and "add --yes" in capsys.readouterr().err
    assert not (tmp_path / "ffhq").exists()


def test_the_committed_study_restores_into_any_folder_and_reports_the_same(tmp_path, capsys):
    """The digits power study's archive, restored with --out elsewhere (the archive is named by the study, not the
    folder), reports the committed tables exactly; a study without an archive is one line, exit 2."""
    import study_frontier as sf
    from tests.conftest import ROOT

    sf.main(["--model", "digits32ldm", "--out", str(tmp_path / "elsewhere"), "restore"])
    assert "restored 84 shard(s)" in capsys.readouterr().out
    sf.main(["--model", "digits32ldm", "--out", str(tmp_path / "elsewhere"), "report",
             "--save", str(tmp_path / "r.json")])
    committed = json.loads((ROOT / "docs" / "frontier" / "digits32ldm.json").read_text())
    again = json.loads((tmp_path / "r.json").read_text())
    assert again["outcomes"] == committed["outcomes"] and again["named"] == committed["named"]
    with pytest.raises(SystemExit) as e:
        sf.main(["--model", "ffhq256ldm", "--out", str(tmp_path / "none"), "restore"])
    assert e.value.code == 2 and "no archive at" in capsys.readouterr().err
