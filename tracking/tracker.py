"""Per-phase wall time and peak memory, and what each annealing step leaves in the trace (time, memory, each
particle's loss, each image's pairwise distances)."""
from __future__ import annotations

import resource
import sys
import time

import torch

from core.groups import same_group
from core.tensors import cuda_sync
from sampler.hooks import Hook


def peak_rss_mb() -> float:
    """Process-lifetime peak RSS (Linux reports KiB, macOS bytes); it cannot be reset per phase."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024 if sys.platform != "darwin" else r / 2 ** 20


def current_rss_mb() -> float:
    """The process's resident size now (Linux: /proc/self/statm); the lifetime peak where that cannot be read."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2 ** 20
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()


def pairwise_distances(z: torch.Tensor, groups: torch.Tensor) -> dict[int, tuple[float | None, float | None]]:
    """image -> mean and min Euclidean distance between its particles (None with < 2 particles)."""
    d = torch.cdist(z.flatten(1).float(), z.flatten(1).float())
    same = same_group(groups)
    images, slot = torch.unique(groups, return_inverse=True)
    member = torch.nn.functional.one_hot(slot, len(images)).T.bool()     # (images, B)
    # elementwise, not matmuls: CUDA has no integer matmul
    pair_sum = (member * torch.where(same, d, 0.0).sum(1).double()).sum(1).tolist()
    pair_count = (member * same.sum(1)).sum(1).tolist()
    row_min = torch.where(same, d, torch.inf).min(1).values
    pair_min = torch.where(member, row_min, torch.inf).min(1).values.tolist()
    return {g: (s / n, m) if n else (None, None)
            for g, s, n, m in zip(images.tolist(), pair_sum, pair_count, pair_min)}


class RunTracker(Hook):
    """A hook that times phases (explore, prune, refine: phase_of(k) names step k's) and steps, and writes each
    step's final state into the trace; first among the hooks, so that its clock covers theirs. Memory: each step's
    own figure, not a running peak (on a GPU the peak allocated within the step, the CUDA peak reset at every step;
    on a CPU the resident size at the step's end), and each phase's peak (on a GPU the largest step peak, on a CPU
    the process's lifetime peak RSS, which cannot be reset)."""

    def __init__(self, device, trace, phase_of=lambda k: "explore", progress=None):
        self.device = torch.device(device)
        self.trace, self.progress, self.phase_of = trace, progress, phase_of
        self.phases: dict[str, dict] = {}
        self._phase = None
        self._phase_t0 = 0.0
        self._step_t0 = 0.0

    def _memory_mb(self) -> float:
        """The phase's peak so far (GPU: since the step began, the phase keeps the largest; CPU: lifetime RSS)."""
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2 ** 20
        return peak_rss_mb()

    def _step_memory_mb(self) -> float:
        """This step's memory: the GPU's peak allocated within it, or the CPU process's resident size now."""
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2 ** 20
        return current_rss_mb()

    def _close_phase(self):
        if self._phase is None:
            return
        cuda_sync(self.device)
        rec = self.phases[self._phase]
        rec["time_s"] += time.perf_counter() - self._phase_t0
        rec["peak_memory_mb"] = max(rec["peak_memory_mb"], self._memory_mb())
        self._phase = None

    def begin_step(self, state, ctx):
        phase = self.phase_of(ctx.k)
        if phase != self._phase:
            self._close_phase()
            self.phases.setdefault(phase, {"time_s": 0.0, "peak_memory_mb": 0.0, "steps": 0,
                                               "memory_kind": "cuda_max_allocated" if self.device.type == "cuda"
                                               else "peak_rss"})
            self._phase = phase
            self._phase_t0 = time.perf_counter()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self._step_t0 = time.perf_counter()

    def end_step(self, state, ctx):
        cuda_sync(self.device)
        loss = state.loss.float().cpu()
        images = state.image_ids.tolist()
        memory = self._step_memory_mb()
        rec = self.phases[self._phase]
        rec["peak_memory_mb"] = max(rec["peak_memory_mb"], memory if self.device.type == "cuda" else 0.0)
        self.trace.batch("step", k=ctx.k, t=ctx.t, sigma=ctx.sigma, phase=self._phase,
                         time_s=time.perf_counter() - self._step_t0, memory_mb=memory)
        self.trace.particles("step", images, state.particle_ids.tolist(), k=ctx.k,
                             loss=[None if not torch.isfinite(v) else float(v) for v in loss])
        distances = pairwise_distances(state.z0, state.image_ids)
        groups = sorted(distances)
        self.trace.images("step", groups, k=ctx.k, mean_pairwise_distance=[distances[g][0] for g in groups],
                          min_pairwise_distance=[distances[g][1] for g in groups])
        self.phases[self._phase]["steps"] += 1
        if self.progress is not None:
            finite = loss[torch.isfinite(loss)]
            self.progress(ctx, float(finite.min()) if len(finite) else float("nan"), state.size)

    def finish(self) -> float:
        """Closes the last phase, writes one trace entry per phase; returns the batch's total time."""
        self._close_phase()
        for name, ph in self.phases.items():
            self.trace.batch("phase", phase=name, **ph)
        return sum(p["time_s"] for p in self.phases.values())
