"""All per-particle state of one sampling run, kept together so pruning slices it in one place."""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from core.groups import earlier_in_image, same_image
from core.rng import MEASUREMENT, ORIENTATION, PARTICLE, generator


def particle_generator(seed: int, image_index: int, particle_index: int, device) -> torch.Generator:
    """Generator owned by one particle, seeded from (seed, image, particle) only."""
    return generator(seed, image_index, PARTICLE, particle_index, device=device)


def orientation_generator(seed: int, image_index: int) -> torch.Generator:
    """Generator for an image's orientation scores (the ELBO's noise draws): independent of the sampling."""
    return generator(seed, image_index, ORIENTATION)


def measurement_generator(seed: int, image_index: int) -> torch.Generator:
    """Generator for an image's measurement noise: independent of particle_num."""
    return generator(seed, image_index, MEASUREMENT)


def first_unused_ids(state) -> torch.Tensor:
    """(B,) the first particle id each particle's image has not used yet: state.next_id, or where no stage has
    made particles yet, one beyond the image's largest id."""
    if state.next_id is not None:
        return state.next_id
    ids = state.particle_ids
    return torch.where(same_image(state.image_ids), ids[None, :], torch.full_like(ids[None, :], -1)).max(1).values + 1


def new_particles(old: "ParticleState", new: "ParticleState", fresh: torch.Tensor, seed: int) -> "ParticleState":
    """new, a selection of old (place for place within each image), with the places in `fresh` (B,) made new
    particles (a branch child, a resampled copy): ids beyond every id their image has used, in batch order, and
    generators of their own from (seed, image, id). Returns new."""
    next_id = first_unused_ids(old)
    new.particle_ids = torch.where(fresh, next_id + (earlier_in_image(old.image_ids) & fresh[None, :]).sum(1),
                                   new.particle_ids)
    new.next_id = next_id + (same_image(old.image_ids) & fresh[None, :]).sum(1)
    generators = list(new.generators)
    for i in fresh.nonzero().flatten().tolist():     # one generator per new particle: the accepted per-particle loop
        generators[i] = particle_generator(seed, int(new.image_ids[i]), int(new.particle_ids[i]), old.z.device)
    new.generators = generators
    return new


@dataclass
class ParticleState:
    """Per-particle tensors share dim 0, so that pruning slices them all in one place."""

    z: torch.Tensor                      # current noisy latent z_{t_k}
    y: torch.Tensor                      # a copy of the image's measurement per particle
    generators: list[torch.Generator]
    particle_ids: torch.Tensor           # original particle index, survives pruning
    image_ids: torch.Tensor              # image each particle belongs to (groups for repulsion/pruning)
    alive: torch.Tensor                  # False once a particle produced a NaN
    loss: torch.Tensor                   # last measurement loss per particle
    z0: torch.Tensor | None = None       # last MCMC result z0_y
    z0_hat: torch.Tensor | None = None   # last ODE x0 estimate
    next_id: torch.Tensor | None = None  # the first id the particle's image has not used (for new particles)

    @property
    def size(self) -> int:
        return self.z.shape[0]

    def randn(self, shape=None) -> torch.Tensor:
        """One standard normal draw per particle from its own generator, stacked to (B, *shape)."""
        shape = tuple(self.z.shape[1:]) if shape is None else tuple(shape)
        return torch.stack([
            torch.randn(shape, generator=g, device=self.z.device, dtype=self.z.dtype) for g in self.generators
        ])

    @classmethod
    def cat(cls, states: list["ParticleState"]) -> "ParticleState":
        """One batch holding the particles of several states (e.g. several images, told apart by image_ids)."""
        out = {}
        for f in fields(cls):
            vs = [getattr(s, f.name) for s in states]
            if f.name == "generators":
                out[f.name] = [x for v in vs for x in v]
            elif all(v is None for v in vs):
                out[f.name] = None
            else:
                out[f.name] = torch.cat(vs)
        return cls(**out)

    def select(self, index) -> "ParticleState":
        """Keep the particles at `index` (a list or LongTensor); every per-particle field is sliced."""
        index = torch.as_tensor(index, dtype=torch.long, device=self.z.device)
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "generators":
                out[f.name] = [v[i] for i in index.tolist()]
            elif isinstance(v, torch.Tensor):
                out[f.name] = v[index.to(v.device)]
            else:
                out[f.name] = v
        return ParticleState(**out)
