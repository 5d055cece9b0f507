"""One default per setting: every stage's hook, built from its flag alone (no other override), holds exactly the
values its block declares; a hook has no defaults of its own."""
import inspect

import pytest

from core.settings import defaults
from stages import STAGES, ordered
from tests.conftest import compose

ON = {"repulsion": "repulsion_scale=0.3", "resampling": "resampling_interval=2", "pruning": "pruning_step=200",
      "refine": "refine_step=200"}
# block keys a hook turns into its steps instead of keeping (the window and end of the schedule, in t)
READ_AS_STEPS = {"repulsion": {"end_t"}, "resampling": {"start_t", "end_t"}}


@pytest.mark.parametrize("name", sorted(ON))
def test_a_hook_built_from_its_flag_alone_holds_the_declared_block(name):
    stage = STAGES[name]
    from pipeline.resolve import resolve

    (active,) = [(s, settings) for s, settings in resolve(compose(ON[name])).active if s is stage]
    hook = stage.hook(active[1])
    declared = defaults(stage.block)
    kept = {k for k in declared if hasattr(hook, k)}
    assert set(declared) - kept == READ_AS_STEPS.get(name, set())
    assert {k: getattr(hook, k) for k in kept} == {k: declared[k] for k in kept}
    # and the constructor has no default for any of them: the declaration is the only one
    params = inspect.signature(type(hook).__init__).parameters
    assert all(params[k].default is inspect.Parameter.empty for k in kept)


def test_every_stage_is_covered_and_the_registry_lists_each_package_once():
    """The registry (stages.py) holds the four stages of the tool's packages, each under its own name, in the order
    they act; no module of the tool registers anything by being imported."""
    import stages

    assert {s.name for s in ordered()} == set(ON)
    assert [s.name for s in ordered()] == sorted(ON, key=lambda n: stages.STAGES[n].order)
    from particle import pruning, repulsion, resampling
    import resample_opt
    assert [m.STAGE for m in (repulsion, resampling, pruning, resample_opt)] == [stages.STAGES[n] for n in
                                                                                  ("repulsion", "resampling",
                                                                                   "pruning", "refine")]