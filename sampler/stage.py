"""The stage protocol: everything one optional stage of the sampler declares (its flag and config block, their
checks, its hook, the per-particle step facts it writes, its section of an image's record and summary, its phase, its
fragment of the run name). The registry that lists the stages is stages.py."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from core.settings import Setting


def _none(*_):
    return None


@dataclass
class Stage:
    """One optional stage, one name: `flag` turns it on (its Setting's default is the off value); `more_flags` are
    its other top-level keys, `block` its config block under its name, its record under its name too; `old_names`:
    names users typed before (old key -> its key now), still accepted on the command line and in earlier runs'
    configs.

    on(cfg): whether the stage runs; check(cfg): checks across settings beyond each setting's own range (raise
    core.errors.ConfigError); hook(cfg): its sampler hook (sampler.hooks.Hook); order: where the hook acts after each
    step among the stages (lower first); step_facts: per-particle step facts its hook writes into the trace -> how an
    image's step record shows them, as (key, "list" | "mean" | "max" | "sum") pairs; record(trace, cfg): its section
    of an image's record, under its name (None: none); summary(images): its fields of the run summary;
    phases(cfg): {phase name: first annealing step k} for per-phase time and memory; boundaries(cfg): the step
    indices the record's `boundaries` block shows; fragment(cfg): its part of the default run name; drops: the kinds of its trace rows that record a particle it took
out of the batch (with that particle's z0), which the image's result keeps for its metrics; notes(images):
    lines parse_metrics prints under a run's table (what a reader must know before crediting the stage)."""

    name: str
    flag: str
    flag_setting: Setting
    on: Callable
    hook: Callable
    fragment: Callable
    order: int
    block: dict[str, Setting] = field(default_factory=dict)
    more_flags: dict[str, Setting] = field(default_factory=dict)
    check: Callable = _none
    step_facts: dict = field(default_factory=dict)
    record: Callable | None = None
    old_names: dict[str, str] = field(default_factory=dict)
    summary: Callable = lambda images: {}
    columns: list = field(default_factory=list)        # parse_metrics --all: (summary key, header, format) of its fields
    notes: Callable = lambda images: []
    phases: Callable = lambda cfg: {}
    boundaries: Callable = lambda cfg: {}
    drops: tuple[str, ...] = ()                         # its trace kinds whose rows with a z0 are dropped particles


def phase_of(stages: list[Stage], cfg) -> Callable[[int], str]:
    """k -> the phase of annealing step k: of the stages whose phase has begun by k, the one acting last (highest
    order); "explore" before any. A phase that begins only after a later-acting one has begun (pruning at the refine
    stage's own t: its decision ends the refine stage's first step) joins it, e.g. "prune+refine", so its time and
    memory are still its own."""
    starts = [(s.order, name, k) for s in stages if s.on(cfg) for name, k in s.phases(cfg).items()
              if k is not None]

    def phase(k: int) -> str:
        begun = sorted((order, name, start) for order, name, start in starts if start <= k)
        if not begun:
            return "explore"
        last = begun[-1]
        hidden = [name for _, name, start in begun[:-1] if start > last[2]]
        return "+".join([*hidden, last[1]])
    return phase
