"""Opt-in per-step metrics against the ground truth (eval.per_step): when does each particle commit to a mode?"""
from __future__ import annotations

import torch

from core.settings import boolean
from core.tensors import to_unit
from evaluation.equivalence import class_matches
from evaluation.metrics import mode_label
from core.tensors import rot180
from sampler.hooks import Hook


SETTINGS = {"per_step": boolean(False, help="per-step PSNR vs the ground truth and its rotation, and the mode label, "
                                           "of every particle (one extra decode per particle and step, timed)")}


class GroundTruthHook(Hook):
    """After each step (and after every other hook), PSNR of each particle's z0 against its image's ground truth
    (and its 180° rotation where the operator cannot tell the two apart), and the mode label up to the measurement's symmetries (the operator's `equivalents`). Costs
    one decode per particle per step, inside the timed step: off by default so that timings measure the sampler
    alone."""

    def __init__(self, gts: torch.Tensor, indices: list[int], fail_psnr: float):
        self.gts, self.fail_psnr = gts, fail_psnr
        self.slot = {index: i for i, index in enumerate(indices)}
        self.classes = {}

    @torch.no_grad()
    def after_step(self, state, ctx):
        import piq  # lazily: it imports torchvision's model zoo (1.6 s per process)

        images = state.image_ids.tolist()
        z0 = ctx.model.decode(state.z0)
        x = to_unit(z0.float())
        gt = to_unit(self.gts[[self.slot[i] for i in images]].float())
        psnr_0 = piq.psnr(x, gt, data_range=1.0, reduction="none").tolist()
        # against the rotation only where the operator cannot tell the two apart
        rotation = {"psnr_180": piq.psnr(x, rot180(gt), data_range=1.0, reduction="none").tolist()} \
            if ctx.operator.rotation_ambiguous else {}
        modes = [None] * len(images)
        for g in dict.fromkeys(images):            # a loop over the batch's images, batched over their particles
            if g not in self.classes:
                self.classes[g] = ctx.operator.equivalents(self.gts[self.slot[g]])
            mine = [i for i, h in enumerate(images) if h == g]
            for i, m in zip(mine, class_matches(z0[mine], self.classes[g])):
                modes[i] = mode_label(m["class_psnr"], m["rotated"], self.fail_psnr)
        ctx.trace.particles("step", images, state.particle_ids, k=ctx.k, psnr=psnr_0, mode=modes, **rotation)
        return state


def commit_times(record: dict) -> dict[int, int]:
    """Final particle -> the earliest t from which its per-step mode label stayed its final label (needs
    eval.per_step; {} without it). A particle absent from a step (a branch child before its birth) ends the run."""
    steps = [s for s in record.get("steps", []) if "mode" in s]
    if not steps:
        return {}
    last = steps[-1]
    out = {}
    for pid, final in zip(last["particle_ids"], last["mode"]):
        t = last["t"]
        for s in reversed(steps):
            if pid not in s["particle_ids"] or s["mode"][s["particle_ids"].index(pid)] != final:
                break
            t = s["t"]
        out[pid] = t
    return out


def committed_fraction(record: dict) -> dict[int, float]:
    """t -> fraction of the final particles whose label at that step already was their final one (for plots)."""
    steps = [s for s in record.get("steps", []) if "mode" in s]
    commits = commit_times(record)
    if not commits:
        return {}
    return {s["t"]: sum(t >= s["t"] for t in commits.values()) / len(commits) for s in steps}
