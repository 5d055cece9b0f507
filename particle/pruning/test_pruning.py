"""The pruning stage: diversity-aware choice within each image, batch slicing, branching, schedules (successive
halving), in the sampler loop and in the record."""
from __future__ import annotations

import math
from dataclasses import fields

import pytest
import torch

from core.errors import ConfigError
from core.groups import pairwise_sq_distances, same_group
from pipeline.validate import validate
from pipeline.resolve import resolve
from sampler import Hook, ParticleState, Trace, latent_daps, particle_generator
from stages import STAGES
from particle.pruning import record as pruning_record
from particle.pruning.choose import PruningHook, choose_kept
from tests.conftest import Identity, compose, ctx_at, declared, make_state

D64 = torch.float64


class FixedLoss:
    """Operator stub: the loss of particle i is losses[i] (pruning recomputes the loss at z0)."""

    def __init__(self, losses):
        self.losses = torch.as_tensor(losses, dtype=D64)

    def loss(self, x, y):
        return self.losses[: x.shape[0]].clone()

    def loss_margin(self, m):
        return float("inf")


# ---------------------------------------------------------------- pruning


def four_in_a_corner():
    """A, B, C within 0.15 of each other; D far away. Losses A < B < C < D (D within 1.1x of A)."""
    z0 = torch.tensor([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [5.0, 5.0]], dtype=D64).view(4, 1, 1, 2)
    return z0, torch.tensor([1.0, 1.01, 1.02, 1.05], dtype=D64)


def test_pruning_keeps_the_far_particle_that_loss_alone_would_drop():
    z0, loss = four_in_a_corner()
    dist = pairwise_sq_distances(z0).sqrt()
    groups = torch.zeros(4, dtype=torch.long)
    assert choose_kept(loss, dist, groups, 2, 0.5, 1.1).tolist() == [True, False, False, True]
    # controls: diversity off keeps by loss; D outside the loss factor falls back to loss order too
    assert choose_kept(loss, dist, groups, 2, 0.0, 1.0).tolist() == [True, True, False, False]
    worse = loss.clone()
    worse[3] = 3.0
    assert choose_kept(worse, dist, groups, 2, 0.5, 1.1).tolist() == [True, True, False, False]
    # three places: A, D, then the best of the rest (none is far from both A and D)
    assert choose_kept(loss, dist, groups, 3, 0.5, 1.1).tolist() == [True, True, False, True]
    # when several are far enough, the farthest wins, not the lowest loss: B, C at 1, D at 7 from A
    spread = z0.clone()
    spread[1:3] *= 10
    dist = pairwise_sq_distances(spread).sqrt()
    assert choose_kept(loss, dist, groups, 2, 0.2, 1.1).tolist() == [True, False, False, True]
    assert choose_kept(loss, dist, groups, 2, 0.2, 1.03).tolist() == [True, True, False, False]
    # equal distances never keep more than asked
    tie = torch.tensor([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]], dtype=D64)
    kept = choose_kept(torch.ones(4, dtype=D64), pairwise_sq_distances(tie).sqrt(), groups, 2, 0.1, 1.1)
    assert kept.sum() == 2 and kept[0]


def test_a_particle_above_the_noise_margin_is_never_kept_over_one_inside_it():
    """The far particle D fits within loss_factor of the best but above the noise level, B inside it: diversity
    alone would keep D (a failure) over B (a fit as good as the truth); the margin keeps B."""
    z0, loss = four_in_a_corner()
    dist = pairwise_sq_distances(z0).sqrt()
    groups = torch.zeros(4, dtype=torch.long)
    assert choose_kept(loss, dist, groups, 2, 0.5, 1.1).tolist() == [True, False, False, True]
    assert choose_kept(loss, dist, groups, 2, 0.5, 1.1, margin=1.015).tolist() == [True, True, False, False]
    # with nobody left inside the margin, diversity decides again; with everybody inside, too
    assert choose_kept(loss, dist, groups, 2, 0.5, 1.1, margin=1.005).tolist() == [True, False, False, True]
    assert choose_kept(loss, dist, groups, 2, 0.5, 1.1, margin=2.0).tolist() == [True, False, False, True]
    # the hook takes the margin from the operator: m sigma^2 (1 + 3 sqrt(2 / m)), the refine stage's eps auto
    from operators import PhaseRetrieval
    op = PhaseRetrieval(32, 2.0, 0.05)
    assert op.loss_margin(6912) == pytest.approx(0.05 ** 2 * 6912 * (1 + 3 * math.sqrt(2 / 6912)))


def test_pruning_works_within_each_image():
    z0, loss = four_in_a_corner()
    z0 = torch.cat([z0, z0 + 1000])              # image 1: same layout, far from image 0
    loss = torch.cat([loss, loss.flip(0)])       # image 1: D is its best
    groups = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    kept = choose_kept(loss, pairwise_sq_distances(z0).sqrt(), groups, 2, 0.5, 1.1)
    # image 1: D (best), then A (the farthest of A, B, C, all far from D and good enough)
    assert kept.tolist() == [True, False, False, True, True, False, False, True]


def prune(state, losses, k=3, **kw):
    hook = PruningHook([(k, 2)], 9, **{**declared("pruning"), **kw})
    ctx = ctx_at(k, Identity(), FixedLoss(losses))
    return hook, hook.after_step(state, ctx), ctx.trace


def test_pruning_slices_every_per_particle_field_consistently():
    z0, loss = four_in_a_corner()
    state = make_state(z0)
    old = make_state(z0)
    hook, new, trace = prune(state, loss)
    keep = torch.tensor([0, 3])
    assert new.size == 2
    for f in fields(ParticleState):
        v, o = getattr(new, f.name), getattr(old, f.name)
        if isinstance(o, torch.Tensor):
            assert torch.equal(v, o[keep]), f.name
    assert new.generators == [state.generators[0], state.generators[3]]      # the same generator objects
    assert new.particle_ids.tolist() == [0, 3] and new.image_ids.tolist() == [0, 0]
    dropped = [r for r in trace.of("prune") if not r["kept"]]
    assert [r["particle"] for r in dropped] == [1, 2] and all(r["k"] == 3 for r in dropped)
    assert torch.equal(torch.stack([r["z0"] for r in dropped]), z0[[1, 2]])
    assert [r["loss"] for r in dropped] == pytest.approx([1.01, 1.02])
    assert [r["distance_to_kept"] for r in dropped] == pytest.approx([0.1, 0.1])
    (rep,) = pruning_record(trace, None)
    assert rep["kept"] == [0, 3] and rep["dropped"] == [1, 2] and rep["mode"] == "prune"
    assert rep["losses"] == pytest.approx({0: 1.0, 1: 1.01, 2: 1.02, 3: 1.05})
    # other steps leave the state alone
    same = hook.after_step(new, ctx_at(4, Identity(), FixedLoss(loss)))
    assert same is new


def test_branch_refills_with_children_that_have_fresh_generators():
    z0, loss = four_in_a_corner()
    state = make_state(z0)
    hook, new, trace = prune(state, loss, mode="branch")
    assert new.size == 4
    # dropped places 1, 2 hold children 4, 5 of the kept particles, best parent first
    assert new.particle_ids.tolist() == [0, 4, 5, 3]
    assert pruning_record(trace, None)[0]["children"] == {4: 0, 5: 3}
    assert torch.equal(new.z0[1], z0[0]) and torch.equal(new.z0[2], z0[3])
    for pos, cid in [(1, 4), (2, 5)]:
        fresh = particle_generator(9, 0, cid, "cpu")
        assert new.generators[pos] is not state.generators[0]
        assert torch.equal(torch.randn(5, generator=new.generators[pos]), torch.randn(5, generator=fresh))
    assert pruning_record(trace, None)[0]["dropped"] == [1, 2]


def test_pruning_config_validation():
    cfg = compose("pruning_step=300", "particle_num=4")
    hook = STAGES["pruning"].hook(validate(cfg).stages["pruning"])
    assert (hook.schedule, hook.mode) == ({35: 2}, "prune")          # t = 300 of 50 steps: k = 35
    for override, key in [("pruning.mode=cut", "pruning.mode"), ("pruning.loss_factor=0.5", "pruning.loss_factor"),
                          ("pruning.diversity_fraction=-1", "pruning.diversity_fraction"),
                          ("pruning_keep=4", "pruning_keep"), ("pruning_step=[300,400]", "pruning_step"),
                          ("pruning_step=[300,100]", "pruning_keep"), ("pruning_step=1001", "pruning_step")]:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.") + "=.* is invalid"):
            validate(compose("pruning_step=300", "particle_num=4", override))
    # a t below every annealing step's (t_49 = 20 of 50 steps) would never prune: one line, before any work
    with pytest.raises(ConfigError, match="pruning_step=10 is below the last annealing step's t = 20"):
        validate(compose("pruning_step=[600,10]", "pruning_keep=[2,1]"))


# ---------------------------------------------------------------- in the sampler loop


class Spy(Hook):
    """Records what the sampler works on at every step (as its tracker) and inside every MCMC drift call."""

    def __init__(self):
        self.z_shapes, self.y_shapes, self.drift_shapes, self.ids, self.z = {}, {}, {}, {}, {}

    def begin_step(self, state, ctx):
        self.z_shapes[ctx.k], self.y_shapes[ctx.k] = tuple(state.z.shape), tuple(state.y.shape)
        self.ids[ctx.k], self.z[ctx.k] = state.particle_ids.tolist(), state.z.clone()
        assert len(state.generators) == state.size

    def end_step(self, state, ctx):
        pass

    def drift(self, z, score, state, ctx):
        self.drift_shapes.setdefault(ctx.k, set()).add(tuple(z.shape))
        return None


@pytest.fixture(scope="module")
def benchmark():
    from models import build_model
    from operators import build_operator
    from sampler import measurement_generator

    cfg = compose("sampler.annealing.num_steps=6", "sampler.mcmc.num_steps=2", "model.num_images=3")
    model = build_model(cfg.model, "cpu").to(D64)
    operator = build_operator(cfg.task, model.image_shape[-1])
    y = operator.measure(model.means[:1].view(1, *model.image_shape), generator=measurement_generator(0, 0))
    return model, operator, y


def run_small(benchmark, *overrides):
    from pipeline.sampling import boundaries, build_hooks, make_state as run_state
    from pipeline.resolve import resolve
    from tests.conftest import loop

    model, operator, y = benchmark
    cfg = compose("sampler.annealing.num_steps=6", "sampler.mcmc.num_steps=2", "model.num_images=3",
                  "particle_num=4", "repulsion_scale=0.3", *overrides)
    spy, trace = Spy(), Trace()
    s = resolve(cfg)
    hooks = [spy, *build_hooks(s)]
    state = run_state(model, y, s, 0, "cpu", D64)
    state = latent_daps(model, operator, state, *loop(s), hooks, trace=trace)
    return state, spy, boundaries(s)["prune_k"], trace


def test_later_steps_run_on_the_pruned_batch(benchmark):
    state, spy, prune_k, trace = run_small(benchmark, "pruning_step=500")
    assert prune_k == 3
    for k in range(6):
        n = 4 if k <= prune_k else 2
        assert spy.z_shapes[k][0] == n and spy.y_shapes[k][0] == n, k
        assert spy.drift_shapes[k] == {(n, 3, 32, 32)}, k
    dropped = [r["particle"] for r in trace.of("prune") if not r["kept"]]
    assert state.size == 2 and state.z0.shape[0] == 2 and len(dropped) == 2
    assert sorted(state.particle_ids.tolist() + dropped) == [0, 1, 2, 3]


def test_branch_children_differ_from_parents_after_one_step(benchmark):
    state, spy, prune_k, _ = run_small(benchmark, "pruning_step=500", "pruning.mode=branch")
    assert all(spy.z_shapes[k][0] == 4 for k in range(6))
    ids = spy.ids[prune_k + 1]
    children = [i for i in ids if i >= 4]
    assert len(children) == 2 and set(ids) - set(children) <= {0, 1, 2, 3}
    z = spy.z[prune_k + 1]
    # a child starts from its parent's z0 but is re-noised with its own generator
    parents = [ids.index(i) for i in ids if i < 4]
    for c in (ids.index(i) for i in children):
        assert all(not torch.allclose(z[c], z[p]) for p in parents)
    assert torch.isfinite(state.z).all()


def test_pipeline_records_pruned_particles(benchmark):
    from pipeline.run import run_image

    model, operator, _ = benchmark
    cfg = compose("sampler.annealing.num_steps=6", "sampler.mcmc.num_steps=2", "model.num_images=3",
                  "particle_num=4", "repulsion_scale=0.3", "pruning_step=500", "save_images=false")
    rec = run_image(model, operator, "x", model.means[0].view(3, 32, 32).float(), 0, resolve(cfg), torch.device("cpu"),
                    D64)
    pruned = [p for p in rec["particles"] if p["pruned_at"] is not None]
    assert len(rec["particles"]) == 4 and len(pruned) == 2
    assert rec["pruning"][0]["dropped"] == sorted(p["particle"] for p in pruned)
    # the tracker records each step's state after its hooks: the pruning step already shows 2
    assert [s["particles"] for s in rec["steps"]] == [4, 4, 4, 2, 2, 2]
    assert all("repulsion_score_ratio" in s for s in rec["steps"])


@pytest.mark.parametrize("seed", range(4))
def test_group_median_equals_each_groups_own_median(seed):
    from core.groups import group_median

    g = torch.Generator().manual_seed(seed)
    B = 11
    groups = torch.randint(0, 4, (B,), generator=g)            # interleaved, unequal groups, maybe a singleton
    alive = torch.rand(B, generator=g) > 0.2
    x = torch.randn(B, 5, generator=g, dtype=D64)
    values = torch.cdist(x, x)
    for mask_alive in (None, alive):
        pairs = same_group(groups, mask_alive)
        got = group_median(values, pairs)
        for i in range(B):
            members = [j for j in range(B) if j == i or pairs[i, j]]
            vals = [values[a, b] for a in members for b in members if a < b]
            if vals:
                assert got[i] == pytest.approx(float(torch.quantile(torch.stack(vals), 0.5)), rel=1e-12), (i, mask_alive)
            else:
                assert torch.isnan(got[i])
    assert torch.isnan(group_median(values[:1, :1], same_group(groups[:1]))).all()   # one particle: no pairs


def test_a_schedule_halves_the_batch_at_each_of_its_steps(benchmark):
    """8 -> 4 -> 2 -> 1 as one stage configured by lists: the batch shrinks at each step, every decision is
    recorded, and a decision only chooses among the survivors of the one before."""
    from pipeline.run import run_image

    model, operator, _ = benchmark
    cfg = compose("sampler.annealing.num_steps=6", "sampler.mcmc.num_steps=2", "model.num_images=3",
                  "particle_num=8", "pruning_step=[700,500,200]", "pruning_keep=[4,2,1]", "save_images=false")
    rec = run_image(model, operator, "x", model.means[0].view(3, 32, 32).float(), 0, resolve(cfg), torch.device("cpu"),
                    D64)
    # t_k = 1000, 833, 667, 500, 333, 167: the triggers fire at k = 2, 3, 5
    assert [s["particles"] for s in rec["steps"]] == [8, 8, 4, 2, 2, 1]
    assert [(d["k"], len(d["kept"]), len(d["dropped"])) for d in rec["pruning"]] == [(2, 4, 4), (3, 2, 2), (5, 1, 1)]
    for before, after in zip(rec["pruning"], rec["pruning"][1:]):
        assert sorted(after["kept"] + after["dropped"]) == sorted(before["kept"])
    pruned = {p["particle"]: p["pruned_at"]["k"] for p in rec["particles"] if p["pruned_at"] is not None}
    assert len(pruned) == 7 and sorted(pruned.values()) == [2] * 4 + [3] * 2 + [5]
    assert rec["boundaries"]["prune_k"] == 2
