"""The sampler's optional stages, listed here and found nowhere else: the particle search's repulsion, resampling and
pruning (particle/) and the refine stage (resample_opt/), each a package declaring one `STAGE`
(sampler/stage.py has the protocol). A new stage is a package, its line below and its test."""
from __future__ import annotations

from particle import pruning, repulsion, resampling
import resample_opt
from sampler.stage import Stage

STAGES: dict[str, Stage] = {s.name: s for s in (repulsion.STAGE, resampling.STAGE, pruning.STAGE, resample_opt.STAGE)}


def register(stage: Stage) -> Stage:
    """Add a stage from outside the tool (a plugin; tests/test_stage_plugin.py); one of the same name is replaced."""
    STAGES[stage.name] = stage
    return stage


def ordered() -> list[Stage]:
    """The stages in the order they act after each step (each stage's `order`)."""
    return sorted(STAGES.values(), key=lambda s: s.order)
