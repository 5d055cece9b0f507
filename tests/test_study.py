"""The study harness: configurations on the same measurements as ordinary run folders (continued, never redone), and
the paired statistics (Wilson intervals, the exact McNemar test, a paired bootstrap) against hand computations."""
import math

import numpy as np
import pytest

from evaluation.paired import compare, mcnemar, paired_interval, table, wilson


def test_wilson_interval_equals_the_formula():
    k, n, z = 7, 20, 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert wilson(k, n) == pytest.approx((centre - half, centre + half), abs=1e-9)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == 1.0


def test_exact_mcnemar_is_a_binomial_test_of_the_discordant_pairs():
    a = np.array([1] * 10 + [0] * 2 + [1] * 5 + [0] * 3)
    b = np.array([0] * 10 + [1] * 2 + [1] * 5 + [0] * 3)
    # 10 pairs only a, 2 only b: two-sided p = 2 * P(X <= 2), X ~ Bin(12, 1/2)
    assert mcnemar(a, b) == pytest.approx(2 * sum(math.comb(12, i) for i in range(3)) / 2 ** 12)
    assert mcnemar(a, a) == 1.0


def test_paired_interval_holds_the_mean_and_is_degenerate_for_equal_differences():
    d = np.array([1, 0, 0, 1, 0, 1, 1, 0, 0, 0, 1, 1], dtype=float)
    low, high = paired_interval(d)
    assert low < d.mean() < high and 0 < high - low < 0.7
    assert paired_interval(np.zeros(8)) == (0.0, 0.0)


def _record(seed, index, found, right, psnr=20.0):
    parts = [{"mode": "0" if found else "fail", "pruned_at": None}]
    return {"seed": seed, "index": index, "found": found, "best_by_prior": {"mode": "0" if right else "180"},
            "particles": parts, "best_of_n": {"psnr": psnr}, "compute": {"tflop": 1.0, "rows": {"decoder_vjp": 10}}}


def test_compare_pairs_by_measurement_and_reports_the_differences():
    ref = [_record(s, i, True, i % 2 == 0) for s in (0, 1) for i in range(5)]
    mine = [_record(s, i, i != 3, True) for s in (0, 1) for i in range(4)]        # 8 shared measurements
    c = compare(mine, ref)
    assert c.n == 8
    assert c.rates["found"][0] == pytest.approx(6 / 8) and c.diffs["found"][0] == pytest.approx(-2 / 8)
    # chosen right: ref right on i = 0, 2 of 0..3, mine on all: +4 of 8, only-mine pairs 4, only-ref 0
    assert c.diffs["chosen_right"][0] == pytest.approx(0.5) and c.p_values["chosen_right"] == pytest.approx(2 / 16)
    text = table({"ref": compare(ref, ref), "mine": c}, "ref")
    assert "| mine | 1 | 10 | 8 | 75 [" in text and "p = 0.12" in text


def test_a_study_runs_each_configuration_once_on_the_same_measurements(tmp_path):
    from pipeline.study import Configuration, records, run_study

    fast = ("sampler.annealing.num_steps=4", "sampler.mcmc.num_steps=2")
    configs = [Configuration("2 independent", "independent", ("particle_num=2", *fast), 2),
               Configuration("1 independent", "independent", ("particle_num=1", *fast), 2)]
    run_study("two_mode", configs, [0, 1], 3, tmp_path, images_per_batch=2)
    recs = records(tmp_path, configs, [0, 1])
    keys = [(r["seed"], r["index"]) for r in recs["2 independent"]]
    assert keys == [(0, 3), (0, 4), (1, 3), (1, 4)] == [(r["seed"], r["index"]) for r in recs["1 independent"]]
    # a measurement is the same for both: particle 0 of the pair is the single particle (same seed, image, id)
    for a, b in zip(recs["2 independent"], recs["1 independent"]):
        assert a["particles"][0]["measurement_loss"] == pytest.approx(b["particles"][0]["measurement_loss"],
                                                                      rel=1e-4)
    stamp = (tmp_path / "2-independent_s0" / "metric.json").stat().st_mtime_ns
    run_study("two_mode", configs, [0, 1], 3, tmp_path, images_per_batch=2)        # all done: nothing rerun
    assert (tmp_path / "2-independent_s0" / "metric.json").stat().st_mtime_ns == stamp


def test_choices_table_counts_by_hand():
    from evaluation.paired import choices_table

    def rec(loss_mode, prior_mode, post_mode, failures):
        parts = [{"failure": f, "pruned_at": None} for f in failures] + [{"failure": "search", "pruned_at": 400}]
        return {"particles": parts, "best_by_loss": {"mode": loss_mode}, "best_by_prior": {"mode": prior_mode},
                "choices": {"posterior": {"mode": post_mode}}}

    recs = [rec("0", "0", "0", [None, "fits"]),            # as sampled right, kept
            rec("0", "180", "0", [None, "twin"]),          # the prior turned a right answer
            rec("180", "180", "0", [None, None]),          # not turned
            rec("fail", "fail", "fail", ["search", "search"])]
    row = choices_table({"cfg": recs}).splitlines()[2]
    # final particles 8 (the pruned one is not counted): twin 1, fits 1, search 2
    assert row.startswith("| cfg | 4 | 12.5 / 0.0 / 12.5 / 25.0 % | 75 % | 50 % | 25 % |")
    # turned - as sampled: -1 of 4, discordant pairs 0 vs 1: p = 1; posterior right in 3 of 4
    assert row.endswith("| -25, p = 1 | 75 % |")
