"""The stage protocol: everything one optional stage of the sampler declares (its flag and config block, its typed
settings and their checks, its hook, the per-particle step facts it writes, its section of an image's record and
summary, its phase, its fragment of the run name). The registry that lists the stages is stages.py."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from core.settings import Block, Setting
from .schedule import trigger_step


@dataclass(frozen=True)
class RunFacts:
    """What a stage's settings may depend on beyond its own keys, resolved once: the annealing steps K, the particles
    per image, the run's seed, and the step from which no stage adds a drift to the MCMC score (the earliest of the
    stages' `drift_end`; None: none)."""

    num_steps: int
    particle_num: int
    seed: int
    drift_end_k: int | None = None

    def step_of(self, t: int | None) -> int | None:
        """The first annealing step k with t_k <= t (None: off, t < 0)."""
        return trigger_step(t, self.num_steps)


def _none(*_):
    return None


@dataclass
class Stage:
    """One optional stage, one name: `flag` turns it on (its Setting's default is the off value, any other value is
    on); `more_flags` are its other top-level keys, `block` its config block under its name, its record under its
    name too; `old_names`: names users typed before (old key -> its key now), still accepted on the command line and
    in earlier runs' configs.

    settings(values, run): its typed settings, made once by pipeline/resolve.py from `values` (a core.settings.Block
    of its flag, more flags and block, as the config spells them) and the RunFacts, with every step index computed;
    raises core.errors.ConfigError for what its settings must satisfy together. Every other callback takes these
    settings, never the config: hook(s): its sampler hook (sampler.hooks.Hook); record(trace, s): its section of an
    image's record, under its name (None: none); phases(s): {phase name: first annealing step k} for per-phase time
    and memory; boundaries(s): the step indices the record's `boundaries` block shows (also when off);
    fragment(s): its part of the default run name. drift_end(values, K): the annealing step from which no stage adds
    a drift (the refine stage's first), given to every stage as RunFacts.drift_end_k.

    order: where the hook acts after each step among the stages (lower first); step_facts: per-particle step facts
    its hook writes into the trace -> how an image's step record shows them, as (key, "list" | "mean" | "max" |
    "sum") pairs; summary(images): its fields of the run summary; columns: how parse_metrics --all shows them;
    drops: the kinds of its trace entries that record a particle it took out of the batch (with that particle's z0),
    which the image's result keeps for its metrics; path_rows: its hook's network rows depend on the sampled path
    (an optimiser that stops on its own rule), so a study's plan counts them over the whole loop; notes(images):
    lines parse_metrics prints under a run's table (what a reader must know before crediting the stage)."""

    name: str
    flag: str
    flag_setting: Setting
    settings: Callable
    hook: Callable
    fragment: Callable
    order: int
    block: dict[str, Setting] = field(default_factory=dict)
    more_flags: dict[str, Setting] = field(default_factory=dict)
    step_facts: dict = field(default_factory=dict)
    record: Callable | None = None
    old_names: dict[str, str] = field(default_factory=dict)
    summary: Callable = lambda images: {}
    columns: list = field(default_factory=list)        # parse_metrics --all: (summary key, header, format) of its fields
    notes: Callable = lambda images: []
    phases: Callable = lambda settings: {}
    boundaries: Callable = lambda settings: {}
    drift_end: Callable = _none
    path_rows: bool = False                             # its network rows depend on the sampled path (a plan runs it)
    drops: tuple[str, ...] = ()                         # its trace kinds whose entries with a z0 are dropped particles

    def is_on(self, values: Block) -> bool:
        """Whether its flag is away from its off value (values: a mapping holding the flag)."""
        return values[self.flag] != self.flag_setting.default


def phase_of(active: list[tuple[Stage, object]]) -> Callable[[int], str]:
    """k -> the phase of annealing step k, given the stages that are on with their settings: of the stages whose
    phase has begun by k, the one acting last (highest order); "explore" before any. A phase that begins only after
    a later-acting one has begun (pruning at the refine stage's own t: its decision ends the refine stage's first
    step) joins it, e.g. "prune+refine", so its time and memory are still its own."""
    starts = [(s.order, name, k) for s, settings in active for name, k in s.phases(settings).items() if k is not None]

    def phase(k: int) -> str:
        begun = sorted((order, name, start) for order, name, start in starts if start <= k)
        if not begun:
            return "explore"
        last = begun[-1]
        hidden = [name for _, name, start in begun[:-1] if start > last[2]]
        return "+".join([*hidden, last[1]])
    return phase
