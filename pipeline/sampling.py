"""Sample a batch of images' particles with the configured stages, then undo the batch once: `split` gives every
image its own result (measurement, final latents, pruned particles, its slice of the trace, its share of the time
and compute)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

import sampler
from sampler import ParticleState, Trace, init_latents, measurement_generator, particle_generator
from pipeline.resolve import RunSettings
from sampler.stage import phase_of
from stages import ordered
from tracking.tracker import RunTracker


def build_hooks(settings: RunSettings) -> list:
    """The hooks of the stages that are on, in the order they act after each step (each stage's `order`)."""
    return [stage.hook(s) for stage, s in settings.active]


def boundaries(settings: RunSettings) -> dict:
    """Where the stages begin, in annealing-step indices (None when off): every stage's `boundaries` (none with
    ReSample, which runs no stage)."""
    return {key: k for stage in ordered() if stage.name in settings.stages
            for key, k in stage.boundaries(settings.stages[stage.name]).items()}


def make_state(model, y, settings: RunSettings, image_index: int, device, dtype) -> ParticleState:
    ids = list(range(settings.particle_offset, settings.particle_offset + settings.particle_num))
    gens = [particle_generator(settings.seed, image_index, i, device) for i in ids]
    z = init_latents(gens, model.latent_shape, settings.sampler.start_scale, device, dtype)
    P = len(ids)
    return ParticleState(
        z=z, y=y.expand(P, *y.shape[1:]).clone(), generators=gens,
        particle_ids=torch.tensor(ids, device=device), image_ids=torch.full((P,), image_index, device=device),
        alive=torch.ones(P, dtype=torch.bool, device=device), loss=torch.full((P,), float("inf"), device=device),
        next_id=torch.full((P,), ids[-1] + 1, device=device),
    )


@dataclass
class Sampled:
    """What sampling one batch gives: the images' measurements, the final state, the trace, the batch's time and
    the rows each network processed."""

    indices: list[int]
    ys: list[torch.Tensor]
    state: ParticleState
    trace: Trace
    total_time_s: float
    network_rows: dict
    boundaries: dict


def sample_batch(model, operator, gts, indices, settings: RunSettings, device, dtype, counter,
                 progress=None) -> Sampled:
    """Measure each image and sample all its particles, every image's particles in one batch.

    gts: (G, C, H, W) on device; indices: the images' data-set indices (they seed the noise, so an image's
    result does not depend on which images share its batch, beyond float round-off); counter: the run's
    tracking.compute.NetworkCounter on the model.
    """
    ys = [operator.measure(gt[None], generator=measurement_generator(settings.seed, i)) for gt, i in zip(gts, indices)]
    state = ParticleState.cat([make_state(model, y, settings, i, device, dtype) for y, i in zip(ys, indices)])
    trace = Trace()
    tracker = RunTracker(device, trace, sampler.phase_of(settings.sampler) or phase_of(settings.active), progress)
    hooks = [tracker, *build_hooks(settings)]           # the tracker first: its clock covers the other hooks
    if settings.per_step:
        from evaluation.trajectory import GroundTruthHook
        hooks.append(GroundTruthHook(gts, indices, settings.eval.fail_psnr))    # last: it sees each step's final z0
    counter.take()
    state = sampler.run_sampler(model, operator, state, settings.sampler, hooks, trace)
    return Sampled(list(indices), ys, state, trace, tracker.finish(), counter.take(), boundaries(settings))


@dataclass
class ImageResult:
    """One image of a sampled batch, as if it had been sampled alone (up to round-off): time and network rows are
    its share of the batch's (the batch's divided by its image count)."""

    index: int
    y: torch.Tensor                  # (1, ...) its measurement
    z: torch.Tensor                  # (P, ...) its particles' final latents
    particle_ids: list[int]
    alive: list[bool]
    dropped: list[dict]              # pruned particles: particle id, z0 at the decision, k, t
    trace: Trace                     # its entries and the batch's
    network_rows: dict
    batch: dict                      # the batch's indices and its own total time
    boundaries: dict                 # where the stages begin (annealing-step indices)


def split(sampled: Sampled) -> list[ImageResult]:
    """One result per image of the batch."""
    G = len(sampled.indices)
    drops = [kind for stage in ordered() for kind in stage.drops]
    state = sampled.state
    images = state.image_ids.tolist()
    out = []
    for index, y in zip(sampled.indices, sampled.ys):
        mine = [i for i, g in enumerate(images) if g == index]
        trace = sampled.trace.for_image(index, G)
        dropped = [{"particle": r["particle"], "z0": r["z0"], "k": r["k"], "t": r["t"]}
                   for r in trace.entries if r["kind"] in drops and r.get("z0") is not None]      # as they happened
        out.append(ImageResult(
            index=index, y=y, z=state.z[mine], particle_ids=state.particle_ids[mine].tolist(),
            alive=state.alive[mine].tolist(), dropped=dropped, trace=trace,
            network_rows={k: v / G for k, v in sampled.network_rows.items()},
            batch={"indices": sampled.indices, "total_time_s": sampled.total_time_s}, boundaries=sampled.boundaries))
    return out
