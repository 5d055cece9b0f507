"""Loss-guided resampling (this package: draw.py): the draws against a per-image reference, weights by loss, copies
with ids and generators of their own, the ancestry in the trace and metric.json, per-image independence."""
import numpy as np
import pytest
import torch

from core.errors import ConfigError
from particle.resampling.draw import ResamplingHook, ancestors, group_cumsum, resampling_generator
from pipeline.validate import validate
from sampler import ParticleState, StepContext, particle_generator
from particle.resampling import record
from tests.conftest import compose, declared


def resampling_record(trace):
    return record(trace, None)

D64 = torch.float64
pytestmark = pytest.mark.usefixtures("one_thread")


def reference_systematic(weights, u):
    """numpy's searchsorted on one group's cumulative weights: place j draws the first index whose cumulative weight
    passes (u + j) / n."""
    cum = np.cumsum(weights)
    n = len(weights)
    return [min(int(np.searchsorted(cum, (u + j) / n, side="right")), n - 1) for j in range(n)]


@pytest.mark.parametrize("seed", range(5))
def test_systematic_draws_equal_a_per_image_reference(seed):
    g = torch.Generator().manual_seed(seed)
    groups = torch.tensor([0, 1, 0, 2, 1, 0, 2, 2, 2])            # interleaved images of unequal sizes
    w = torch.rand(9, generator=g, dtype=D64) ** 3
    norm = w / torch.stack([w[groups == x].sum() for x in groups.tolist()])
    u_image = {0: 0.13, 1: 0.71, 2: 0.999}
    u = torch.tensor([u_image[x] for x in groups.tolist()], dtype=D64)
    got = ancestors(norm, groups, u, "systematic")
    for x in (0, 1, 2):
        idx = (groups == x).nonzero().flatten()
        want = reference_systematic(norm[idx].numpy(), u_image[x])
        assert got[idx].tolist() == idx[want].tolist(), x
    # group sums as the per-image cumulative sums say
    cum = group_cumsum(norm, groups)
    for x in (0, 1, 2):
        assert float(cum[(groups == x).nonzero().flatten()[-1]]) == pytest.approx(1.0, abs=1e-12)


def test_equal_weights_keep_every_particle_and_a_dominant_one_takes_all():
    groups = torch.zeros(4, dtype=torch.long)
    u = torch.full((4,), 0.5, dtype=D64)
    assert ancestors(torch.full((4,), 0.25, dtype=D64), groups, u, "systematic").tolist() == [0, 1, 2, 3]
    assert ancestors(torch.tensor([0.0, 1.0, 0.0, 0.0], dtype=D64), groups, u, "systematic").tolist() == [1] * 4


class FixedLoss:
    def __init__(self, losses):
        self.losses = torch.as_tensor(losses, dtype=D64)

    def loss(self, x, y):
        return self.losses[: x.shape[0]].clone()


class Identity:
    def decode(self, z):
        return z


def state_of(B=4, groups=None, seed=0):
    """Each image's particles numbered from 0, as a run makes them."""
    groups = torch.zeros(B, dtype=torch.long) if groups is None else groups
    g = groups.tolist()
    ids = torch.tensor([g[:i].count(x) for i, x in enumerate(g)])
    z0 = torch.arange(B, dtype=D64).view(B, 1, 1, 1) * torch.ones(B, 1, 2, 2, dtype=D64)
    return ParticleState(z=z0.clone(), y=torch.zeros(B, 1, 2, 2, dtype=D64),
                         generators=[particle_generator(seed, g[i], int(ids[i]), "cpu") for i in range(B)],
                         particle_ids=ids, image_ids=groups, alive=torch.ones(B, dtype=torch.bool),
                         loss=torch.zeros(B, dtype=D64), z0=z0,
                         next_id=torch.tensor([g.count(x) for x in g]))


def event(state, losses, hook=None, k=5):
    hook = hook or ResamplingHook([k], 3, **{**declared("resampling", "start_t", "end_t"), "temperature": 0.05})
    ctx = StepContext(k=k, t=900, sigma=1.0, sigma_next=0.9, num_steps=50, model=Identity(),
                      operator=FixedLoss(losses))
    return hook.after_step(state, ctx), ctx.trace


def test_a_low_loss_particle_is_copied_with_new_ids_and_generators():
    # particle 1 is far better: exp(-(L - L_min) / (0.05 L_min)) leaves the others ~e^-20
    new, trace = event(state_of(), [20.0, 10.0, 20.0, 20.0])
    assert new.particle_ids.tolist() == [1, 4, 5, 6]                 # its own place first, then its copies
    assert torch.equal(new.z0, torch.ones_like(new.z0))               # every place holds particle 1's z0
    assert new.next_id.tolist() == [7] * 4
    for pos, cid in [(1, 4), (2, 5), (3, 6)]:
        fresh = particle_generator(3, 0, cid, "cpu")
        assert torch.equal(torch.randn(3, generator=new.generators[pos]), torch.randn(3, generator=fresh))
    (rec,) = resampling_record(trace)
    assert rec["offspring"] == {0: 0, 1: 4, 2: 0, 3: 0} and rec["dropped"] == [0, 2, 3]
    assert rec["children"] == {4: 1, 5: 1, 6: 1} and rec["resampled"] is True
    assert rec["weights"][1] == pytest.approx(1.0, abs=1e-8) and rec["ess"] == pytest.approx(1.0, abs=1e-6)
    dropped = [r for r in trace.of("resample") if "particle" in r and r["z0"] is not None]
    assert [r["particle"] for r in dropped] == [0, 2, 3]


def test_ess_threshold_skips_an_even_image_and_steps_outside_are_untouched():
    hook = ResamplingHook([5], 3, **{**declared("resampling", "start_t", "end_t"), "temperature": 0.05,
                                        "ess_threshold": 0.5})
    state = state_of()
    new, trace = event(state, [10.0, 10.01, 10.02, 10.0], hook)   # nearly equal: ESS ~ 4 > 0.5 * 4
    assert new.particle_ids.tolist() == [0, 1, 2, 3] and not resampling_record(trace)[0]["resampled"]
    same, _ = event(new, [1.0, 9.0, 9.0, 9.0], hook, k=6)          # not an event step
    assert same is new


def test_images_resample_on_their_own():
    """Two images in one batch: each one's draws and weights are what it gets alone."""
    groups = torch.tensor([0, 0, 0, 1, 1, 1])
    both, _ = event(state_of(6, groups), [5.0, 1.0, 5.0, 1.0, 1.0, 9.0])
    alone0, _ = event(state_of(3), [5.0, 1.0, 5.0])
    assert both.particle_ids[:3].tolist() == alone0.particle_ids.tolist() == [1, 3, 4]
    alone1, _ = event(state_of(3, torch.ones(3, dtype=torch.long)), [1.0, 1.0, 9.0])
    assert torch.equal(both.particle_ids[3:], alone1.particle_ids) and both.image_ids.tolist() == groups.tolist()
    assert torch.equal(both.z0[3:], alone1.z0 + 3)                   # image 1's z0 are 3, 4, 5 in the batch
    # the per-image generator: a function of (seed, image, event step) alone, by the one recipe of core.rng, so the
    # same draw whatever shares the batch, and another for another image, event or seed
    from core.rng import RESAMPLING, generator

    draw = lambda g: torch.rand(4, generator=g)  # noqa: E731
    assert torch.equal(draw(resampling_generator(3, 1, 5)), draw(generator(3, 1, RESAMPLING, 5)))
    others = [resampling_generator(3, 0, 5), resampling_generator(3, 1, 6), resampling_generator(4, 1, 5)]
    assert all(not torch.equal(draw(resampling_generator(3, 1, 5)), draw(g)) for g in others)


def test_window_and_validation():
    assert ResamplingHook.event_steps(5, 900, 500, 50) == [5, 10, 15, 20, 25]
    assert ResamplingHook.event_steps(1, 100, 0, 50) == list(range(45, 49))     # never the last step
    validate(compose("particle_num=4", "resampling_interval=5"))
    for override, key in [("resampling_interval=-1", "resampling_interval"),
                          ("resampling.temperature=0", "resampling.temperature"),
                          ("resampling.ess_threshold=1.5", "resampling.ess_threshold"),
                          ("resampling.scheme=stratified", "resampling.scheme"),
                          ("resampling.start_t=100", "start_t=100 is below")]:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            validate(compose("particle_num=4", "resampling_interval=5", override))
    with pytest.raises(ConfigError, match="needs particle_num >= 2"):
        validate(compose("particle_num=1", "resampling_interval=5"))


def test_in_a_run_the_record_holds_every_event_and_batches_equal_single_images(tmp_path):
    import pipeline.run as pipeline_run

    common = ["dtype=float64", "particle_num=4", "resampling_interval=2", "resampling.start_t=800",
              "resampling.end_t=400", "sampler.annealing.num_steps=10", "sampler.mcmc.num_steps=3",
              "num_eval_images=2", "save_images=false", f"save_dir={tmp_path}", "pruning_step=300"]
    one = pipeline_run.run(compose(*common, "name=one"))
    two = pipeline_run.run(compose(*common, "name=two", "images_per_batch=2"))
    for a, b in zip(one["images"], two["images"]):
        assert [e["k"] for e in a["resampling"]] == [2, 4, 6] and a["pruning"][0]["k"] == 7
        assert a["resampling"] == b["resampling"]
        assert [p["particle"] for p in a["particles"]] == [p["particle"] for p in b["particles"]]
        for p, q in zip(a["particles"], b["particles"]):
            assert p["psnr"] == pytest.approx(q["psnr"], abs=1e-6)
        # every particle that ever lived has a row: the final ones, the resampled-away and the pruned ones
        ever = {p["particle"] for p in a["particles"]}
        born = {c for e in a["resampling"] for c in e["children"]}
        assert ever == set(range(4)) | born
        final = [p for p in a["particles"] if p["pruned_at"] is None]
        assert len(final) == 2
    # the loss at each event costs one decoder forward per particle: 3 events x 4 particles, plus pruning's 4
    assert one["images"][0]["compute"]["rows"]["decoder_forward"] == 3 * 4 + 4
    # pruning before the last events: they draw among the two kept particles
    early = pipeline_run.run(compose(*[c for c in common if not c.startswith("pruning_step")], "pruning_step=500",
                                     "name=early"))
    for im in early["images"]:
        assert im["pruning"][0]["k"] == 5 and [len(e["weights"]) for e in im["resampling"]] == [4, 4, 2]
        assert len([p for p in im["particles"] if p["pruned_at"] is None]) == 2
