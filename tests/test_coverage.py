"""The paired interval of a binary endpoint covers: simulated clustered paired binaries (images x seeds, the same
measurement under two configurations), in every scenario the studies meet (no discordance, discordance one way,
rare discordance on 0-3 images, both ways; with and without an image effect), the 95 % interval of
analysis/paired.binary_interval holds the true difference in at least 93 % of the replications. With R = 2,000
replications the Monte Carlo standard error of a coverage near 95 % is 0.49 points, so 93 % is four standard errors
below the nominal level. The interval the audit found (scale x (2 CP - 1) over the discordant images) fails the same
test."""
import math

import numpy as np
import pytest
from scipy.stats import beta

from analysis.paired import binary_interval, difference

R = 2000
MC_SE = math.sqrt(0.95 * 0.05 / R)                   # 0.0049


def simulate(rng, images, seeds, image_effect, disc, one_way, concentrated=None, base=0.7):
    """Per-image differences (R, images) and the true mean difference. Each image has a success probability (drawn
    from Beta(2 base, 2 (1 - base)) with an image effect, else base); configuration a succeeds with it; b equals a
    except where a measurement is flipped, with probability disc per measurement, or, concentrated = (share, h),
    with probability h on that share of the images and never on the others (discordance clustered on few images).
    one_way: only a's successes are lost (b <= a); else b = a xor flip."""
    shape = (R, images)
    p = rng.beta(2 * base, 2 * (1 - base), size=shape) if image_effect else np.full(shape, base)
    if concentrated is None:
        r, mean_r = np.full(shape, disc), disc
    else:
        share, h = concentrated
        r, mean_r = np.where(rng.random(shape) < share, h, 0.0), share * h
    a = rng.random((*shape, seeds)) < p[..., None]
    flip = rng.random((*shape, seeds)) < r[..., None]
    b = a & ~flip if one_way else a ^ flip
    truth = base * mean_r if one_way else mean_r * (2 * base - 1)
    return (a.astype(float) - b).mean(-1), truth


SCENARIOS = {      # name: (images, seeds, kwargs)
    "no discordance": (64, 4, dict(disc=0.0, one_way=True)),
    "one way, common": (64, 4, dict(disc=0.05, one_way=True)),
    "one way, strong": (64, 4, dict(disc=0.15, one_way=True)),
    "one way, on few images": (64, 4, dict(disc=0, one_way=True, concentrated=(8 / 64, 0.8))),
    "rare: ~1.5 images, every seed": (64, 4, dict(disc=0, one_way=True, concentrated=(1.5 / 64, 1.0))),
    "rare: ~0.5 image, every seed": (64, 4, dict(disc=0, one_way=True, concentrated=(0.5 / 64, 1.0))),
    "rare: ~3 images, some seeds": (64, 4, dict(disc=0, one_way=True, concentrated=(3 / 64, 0.6))),
    "rare: ~1.6 images, one seed": (64, 4, dict(disc=1.6 / 64 / 4 / 0.7, one_way=True)),
    "both ways": (64, 4, dict(disc=0.1, one_way=False)),
    "digits design, one way": (100, 2, dict(disc=0.05, one_way=True)),
    "digits design, rare": (100, 2, dict(disc=0, one_way=True, concentrated=(2.5 / 100, 1.0))),
    "near the ceiling, one way": (64, 4, dict(base=0.95, disc=0.03, one_way=True)),
    "near the ceiling, rare": (64, 4, dict(base=0.95, disc=0, one_way=True, concentrated=(2 / 64, 0.5))),
}


def old_interval(d):
    """The interval the audit found: for fewer than 10 discordant images or all one way, scale x (2 CP - 1) of the
    share of discordant images that went up (its far bound never passes the observed mean |difference|); +-the
    Clopper-Pearson bound of the discordant share where none differs."""
    n = d.shape[-1]
    up, down = (d > 1e-12).sum(-1), (d < -1e-12).sum(-1)
    k = up + down
    scale = np.abs(d).sum(-1) / n
    lo = np.where(up > 0, beta.ppf(0.025, up, k - up + 1), 0.0)
    hi = np.where(down > 0, beta.ppf(0.975, up + 1, k - up), 1.0)
    none = 1 - 0.025 ** (1 / n)
    return np.where(k == 0, -none, scale * (2 * lo - 1)), np.where(k == 0, none, scale * (2 * hi - 1))


@pytest.mark.parametrize("image_effect", [True, False], ids=["image effect", "no image effect"])
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_the_binary_interval_covers(name, image_effect):
    images, seeds, kw = SCENARIOS[name]
    rng = np.random.default_rng(sum(map(ord, name)) + image_effect)
    d, truth = simulate(rng, images, seeds, image_effect, **kw)
    low, high = binary_interval(d)
    coverage = float(np.mean((low <= truth + 1e-12) & (truth - 1e-12 <= high)))
    assert coverage >= 0.93, f"{name}: coverage {coverage:.3f} (Monte Carlo SE {MC_SE:.4f})"


def test_the_old_interval_fails_the_same_test():
    """Where all discordance goes one way the audited interval covers about half the time (58 % in the audit's own
    simulation); on these scenarios it falls below 93 % in every one-way scenario with discordance."""
    for name in ("one way, common", "one way, on few images", "rare: ~3 images, some seeds"):
        images, seeds, kw = SCENARIOS[name]
        d, truth = simulate(np.random.default_rng(7), images, seeds, True, **kw)
        low, high = old_interval(d)
        coverage = float(np.mean((low <= truth + 1e-12) & (truth - 1e-12 <= high)))
        assert coverage < 0.93 - 3 * MC_SE, f"{name}: the old interval covered {coverage:.3f}"


def test_difference_uses_the_covering_interval_and_needs_no_seed():
    """difference() gives binary_interval of the per-image mean differences, the same on every call (no bootstrap),
    and never a point where no image differs."""
    rng = np.random.default_rng(0)
    keys = [(s, i) for s in range(4) for i in range(30)]
    a, b = (rng.random(120) < 0.7).astype(float), (rng.random(120) < 0.6).astype(float)
    d = difference(keys, a, b, binary=True)
    per_image = (a - b).reshape(4, 30).mean(0)
    low, high = binary_interval(per_image)
    assert (d.low, d.high) == (pytest.approx(float(low)), pytest.approx(float(high)))
    assert d.value == pytest.approx(per_image.mean())
    again = difference(keys, a, b, binary=True)
    assert (again.low, again.high, again.p) == (d.low, d.high, d.p)
    same = difference(keys, a, a, binary=True)
    assert same.low < 0 < same.high and same.verdict == "unresolved"
