"""Prune: at a diffusion time t, or at each of a schedule of them (successive halving), keep the best and far-apart
particles of each image and physically shrink the batch, or branch the kept ones (choose.py beside it)."""
from __future__ import annotations

from dataclasses import dataclass

from core.errors import check, is_int
from core.settings import Block, choice, integer_list, number
from .choose import MODES, PruningHook
from sampler.schedule import check_trigger
from sampler.stage import RunFacts, Stage


def _is_list(v) -> bool:
    return not isinstance(v, str) and hasattr(v, "__len__")


def _show(v) -> str:
    """A value as a message shows it: a list in brackets."""
    return str(list(v)) if _is_list(v) else str(v)


def schedule_of(steps, keeps) -> list[tuple[int, int]]:
    """The pruning schedule as (t, keep) pairs, earliest first: `pruning_step` a time t (-1 = off) or a list of them,
    `pruning_keep` the particles kept there (a list of the same length for a list of times)."""
    if not _is_list(steps):
        return [] if steps == -1 else [(steps, keeps)]
    return list(zip(list(steps), list(keeps) if _is_list(keeps) else [keeps] * len(steps)))


@dataclass(frozen=True)
class PruningSettings:
    """schedule: (t, keep) pairs, earliest first; steps: the same as (annealing step k, keep); seed: the run's;
    block: the `pruning` block."""

    schedule: tuple[tuple[int, int], ...]
    steps: tuple[tuple[int, int], ...]
    seed: int
    block: Block

    @property
    def first_k(self) -> int | None:
        return self.steps[0][0] if self.steps else None


def settings(values: Block, run: RunFacts) -> PruningSettings:
    """A time and a keep below particle_num, or lists of both: times decreasing, keeps decreasing (e.g. 8 -> 4 -> 2
    -> 1 as pruning_step=[600,400,200] pruning_keep=[4,2,1]); with pruning off the default keep passes."""
    steps, keeps, n = values.pruning_step, values.pruning_keep, run.particle_num
    if _is_list(steps):
        ts = list(steps)
        check(all(a > b for a, b in zip(ts, ts[1:])), f"pruning_step={ts} is invalid: a schedule's times decrease")
        ks = list(keeps) if _is_list(keeps) else None
        check(ks is not None and len(ks) == len(ts),
              f"pruning_keep={_show(keeps)} is invalid with pruning_step={ts}: give one keep per step, e.g. "
              f"pruning_keep=[{','.join(str(max(n >> (i + 1), 1)) for i in range(len(ts)))}]")
        check(all(a > b for a, b in zip([n, *ks], ks)),
              f"pruning_keep={ks} is invalid with particle_num={n}: each below the one before, the first below "
              f"particle_num")
    else:
        top = n - 1 if steps >= 0 else max(n - 1, 2)
        check(is_int(keeps) and 1 <= keeps <= top, f"pruning_keep={_show(keeps)} is invalid with particle_num={n}: "
                                                    f"must be in 1 … {top}")
    schedule = schedule_of(steps, keeps)
    for t, _ in schedule:
        check_trigger("pruning_step", t, run.num_steps, "that pruning would never happen")
    return PruningSettings(tuple(schedule), tuple((run.step_of(t), keep) for t, keep in schedule), run.seed,
                           values.pruning)


def hook(s: PruningSettings) -> PruningHook:
    return PruningHook(list(s.steps), s.seed, **s.block)


def record(trace, s: PruningSettings) -> list[dict]:
    """The pruning decisions for this image, one per step of the schedule, earliest first."""
    decisions = {}
    for r in trace.of("prune"):
        decisions.setdefault(r["k"], []).append(r)
    out = []
    for k, rows in sorted(decisions.items()):
        dropped = [r for r in rows if not r["kept"]]
        rec = {"mode": rows[0]["mode"], "k": k, "t": rows[0]["t"],
               "kept": [r["particle"] for r in rows if r["kept"]], "dropped": [r["particle"] for r in dropped],
               "losses": {r["particle"]: r["loss"] for r in rows},
               "distance_to_kept": {r["particle"]: r["distance_to_kept"] for r in dropped},
               "median_distance": rows[0]["median_distance"]}
        if rec["mode"] == "branch":
            rec["children"] = {r["particle"]: r["parent"] for r in trace.of("birth") if r["k"] == k}
        out.append(rec)
    return out


def fragment(s: PruningSettings) -> str:
    return f"prune{'-'.join(str(t) for t, _ in s.schedule)}k{'-'.join(str(k) for _, k in s.schedule)}"


STAGE = Stage(
    name="pruning", flag="pruning_step", order=30, drops=("prune",),
    flag_setting=integer_list(0, 1000, default=-1, off=-1,
                              help="diffusion time t at which to prune to pruning_keep particles (-1 = off), or a "
                                   "list of times (a schedule, e.g. [600,400,200])"),
    more_flags={"pruning_keep": integer_list(1, default=2,
                                             help="particles kept per image at pruning_step (default 2); a list for "
                                                  "a schedule, e.g. [4,2,1]")},
    block={
        "mode": choice(*MODES, default="prune", help="prune: slice the batch; branch: refill it with children of the "
                                                     "kept particles"),
        "diversity_fraction": number(0, 10, default=0.5, help='"far": farther than this fraction of the median '
                                                              'pairwise z0 distance from every kept one'),
        "loss_factor": number(1, default=1.1, help="and a measurement loss within this factor of the best, else "
                                                   "plain loss order"),
    },
    settings=settings, hook=hook, record=record, fragment=fragment,
    phases=lambda s: {"prune": None if s.first_k is None else s.first_k + 1},
    boundaries=lambda s: {"prune_k": s.first_k},
)
