"""Per-phase wall time and peak memory, plus one record per annealing step."""
from __future__ import annotations

import resource
import sys
import time

import torch

from particle.groups import same_group


def cuda_sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_rss_mb() -> float:
    """Process-lifetime peak RSS (Linux reports KiB, macOS bytes); it cannot be reset per phase."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024 if sys.platform != "darwin" else r / 2 ** 20


def pairwise_distances(z: torch.Tensor, groups: torch.Tensor) -> tuple[float | None, float | None]:
    """Mean and min Euclidean distance between particles of the same group (None with < 2 per group)."""
    flat = z.flatten(1).float()
    d = torch.cdist(flat, flat)
    same = same_group(groups)
    if not same.any():
        return None, None
    vals = d[same.to(d.device)]
    return float(vals.mean()), float(vals.min())


class RunTracker:
    """Times phases (explore, prune, refine) and steps; resets the CUDA peak at each phase boundary."""

    def __init__(self, device, progress=None):
        self.device = torch.device(device)
        self.progress = progress
        self.phases: dict[str, dict] = {}
        self.steps: list[dict] = []
        self._phase = None
        self._phase_t0 = 0.0
        self._step_t0 = 0.0

    def _memory_mb(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2 ** 20
        return peak_rss_mb()

    def _close_phase(self):
        if self._phase is None:
            return
        cuda_sync(self.device)
        rec = self.phases[self._phase]
        rec["time_s"] += time.perf_counter() - self._phase_t0
        rec["peak_memory_mb"] = max(rec["peak_memory_mb"], self._memory_mb())
        self._phase = None

    def begin_step(self, state, ctx):
        if ctx.phase != self._phase:
            self._close_phase()
            if self.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(self.device)
            self.phases.setdefault(ctx.phase, {"time_s": 0.0, "peak_memory_mb": 0.0, "steps": 0,
                                               "memory_kind": "cuda_max_allocated" if self.device.type == "cuda"
                                               else "peak_rss"})
            self._phase = ctx.phase
            self._phase_t0 = time.perf_counter()
        self._step_t0 = time.perf_counter()

    def end_step(self, state, ctx):
        cuda_sync(self.device)
        mean_d, min_d = pairwise_distances(state.z0, state.image_ids)
        loss = state.loss.float().cpu()
        rec = {
            "k": ctx.k, "t": ctx.t, "sigma": ctx.sigma, "phase": ctx.phase,
            "time_s": time.perf_counter() - self._step_t0,
            "memory_mb": self._memory_mb(),
            "particles": state.size,
            "particle_ids": state.particle_ids.tolist(),
            "mean_pairwise_distance": mean_d, "min_pairwise_distance": min_d,
            "loss": [None if not torch.isfinite(v) else float(v) for v in loss],
        }
        rec.update(ctx.log)
        self.steps.append(rec)
        self.phases[ctx.phase]["steps"] += 1
        if self.progress is not None:
            finite = loss[torch.isfinite(loss)]
            self.progress(ctx, float(finite.min()) if len(finite) else float("nan"), state.size)

    def finish(self) -> dict:
        self._close_phase()
        return {"phases": self.phases, "steps": self.steps,
                "total_time_s": sum(p["time_s"] for p in self.phases.values())}
