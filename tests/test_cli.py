"""Command line: --flag value and key=value both work, bad flags and impossible combinations stop early."""
import pytest

from core.errors import ConfigError
from pipeline.cli import translate_argv
from pipeline.validate import validate
from tests.conftest import compose


def test_flags_translate_both_ways():
    argv = ["--particle_num", "4", "--repulsion_scale=0.5", "num_eval_images=2", "--cfg", "job", "-m",
            "--config-name", "default", "--pruning_step", "200"]
    assert translate_argv(argv) == ["particle_num=4", "repulsion_scale=0.5", "num_eval_images=2", "--cfg", "job",
                                    "-m", "--config-name", "default", "pruning_step=200"]


def test_the_refine_stages_old_names_still_work(capsys):
    """Refine was `optimization_step` / the `optimization` block: typed the old way it runs as today's name, with a
    note saying so; a name that only begins like an old one is left alone."""
    argv = ["--optimization_step", "200", "--optimization_step=100", "optimization.lr=1e-3", "optimizations=1"]
    assert translate_argv(argv) == ["refine_step=200", "refine_step=100", "refine.lr=1e-3", "optimizations=1"]
    assert "optimization_step is called refine_step now" in capsys.readouterr().err


@pytest.mark.parametrize("argv, needle", [
    (["--particles", "4"], "unknown flag --particles"),
    (["--particle_num"], "--particle_num needs a value"),
])
def test_bad_flags(argv, needle):
    with pytest.raises(ConfigError, match=needle):
        translate_argv(argv)


@pytest.mark.parametrize("override, needle", [
    ("particle_num=0", "particle_num=0 is invalid: must be an integer >= 1"),
    ("particle_num=four", "particle_num=four is invalid: must be an integer >= 1"),
    ("pruning_step=1200", "pruning_step=1200 is invalid: must be an integer in 0 … 1000 (or -1: off), or a list"),
    ("refine_step=-5", "refine_step=-5 is invalid"),
    ("num_eval_images=0", "num_eval_images=0 is invalid"),
    ("repulsion_scale=-1", "repulsion_scale=-1 is invalid"),
    ("sampler=langevin", "use model=two_mode sampler=two_mode data=two_mode"),
])
def test_impossible_settings(override, needle):
    with pytest.raises(ConfigError) as e:
        validate(compose(override))
    assert needle in str(e.value)


def test_pruning_keep_must_be_below_particle_num():
    with pytest.raises(ConfigError, match="pruning_keep=4 is invalid with particle_num=4"):
        validate(compose("particle_num=4", "pruning_step=200", "pruning_keep=4"))
    validate(compose("particle_num=4", "pruning_step=200", "pruning_keep=2"))


@pytest.mark.parametrize("overrides, needle", [
    (["refine_step=200", "refine.lr=0"], "refine.lr=0 is invalid"),
    (["pruning_step=200", "pruning.mode=shuffle"], "pruning.mode=shuffle is invalid"),
])
def test_stage_blocks_are_checked_before_any_work(overrides, needle):
    with pytest.raises(ConfigError, match=needle):
        validate(compose(*overrides))
