"""A stage from outside the tool: a toy "restart" stage defined here (and nowhere else), added with stages.register,
runs from the command line with its own flag and block, writes a per-particle step fact and its own section of every image's record, and
names itself in the run's name, with no other file of the tool changed."""
import json
import subprocess
import sys

import torch

from tests.conftest import ROOT

TINY = ["sampler.annealing.num_steps=6", "sampler.mcmc.num_steps=2", "num_eval_images=2", "images_per_batch=2"]


def register_toy() -> None:
    """The whole stage: at step restart_step, each image's worst (or best) particle restarts from its ODE estimate."""
    from dataclasses import dataclass

    from core.groups import same_image
    from core.settings import choice, integer
    from sampler.hooks import Hook
    from sampler.stage import Stage
    from stages import register

    class RestartHook(Hook):
        def __init__(self, k: int, which: str):
            self.k, self.which = k, which

        def after_step(self, state, ctx):
            if ctx.k != self.k:
                return state
            key = state.loss if self.which == "worst" else -state.loss
            table = torch.where(same_image(state.image_ids), key[None, :], torch.full_like(key[None, :], -torch.inf))
            pick = table.argmax(1) == torch.arange(state.size)                 # one per image, batched
            state.z0 = torch.where(pick.view(-1, *[1] * (state.z0.ndim - 1)), state.z0_hat, state.z0)
            ctx.trace.particles("step", state.image_ids, state.particle_ids, k=ctx.k, restarted=pick.long())
            ctx.trace.particles("restart", state.image_ids, state.particle_ids, k=ctx.k, restarted=pick)
            return state

    @dataclass(frozen=True)
    class RestartSettings:                  # what its hook, record and name read: k computed once
        step: int
        k: int | None
        which: str

    register(Stage(
        name="restart", flag="restart_step", order=25,
        flag_setting=integer(0, 1000, default=-1, off=-1, help="diffusion time t at which the worst particle restarts"),
        block={"which": choice("worst", "best", default="worst", help="which particle of each image restarts")},
        settings=lambda v, run: RestartSettings(v.restart_step, run.step_of(v.restart_step), v.restart.which),
        hook=lambda s: RestartHook(s.k, s.which),
        step_facts={"restarted": [("restarted", "sum")]},
        record=lambda trace, s: {"k": s.k, "particles": [r["particle"] for r in trace.of("restart") if r["restarted"]]},
        fragment=lambda s: f"restart{s.step}"))


def entries(*calls, cwd) -> list:
    """posterior_sample.py's command lines, each as the command line runs it (tests/conftest.cli), in one new process
    that registered the toy stage first; each call's (exit status, stdout, stderr)."""
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); from tests.test_stage_plugin import register_toy; "
            "from tests.conftest import cli; register_toy(); "
            "out = [cli(*c, cwd=sys.argv[3]) for c in json.loads(sys.argv[2])]; "
            "sys.stdout.write(json.dumps([[r.returncode, r.stdout, r.stderr] for r in out]))")
    r = subprocess.run([sys.executable, "-c", code, str(ROOT), json.dumps(calls), str(cwd)], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout)


def test_a_toy_stage_runs_from_the_command_line_with_its_flag_record_and_name(tmp_path):
    (code, _, err), bad, (_, help_page, _) = entries(["--restart_step", "500", *TINY],
                                                      ["--restart_step", "500", "restart.which=random", *TINY],
                                                      ["--help"], cwd=tmp_path)
    assert code == 0, err[-2000:]
    # its fragment in the default name (then the TINY steps)
    run = tmp_path / "results" / "two_mode_p4_restart500_annealing.num_steps6_mcmc.num_steps2"
    metric = json.loads((run / "metric.json").read_text())
    assert metric["config"]["restart_step"] == 500 and metric["config"]["restart"] == {"which": "worst"}
    for im in metric["images"]:
        (step,) = [s for s in im["steps"] if s["t"] == 500]                 # k = 3 of 6: t_3 = 500
        assert im["restart"]["k"] == step["k"] == 3 and step["restarted"] == 1
        # the restarted particle is the image's worst at that step, and its own image's: one per image
        worst = step["particle_ids"][max(range(len(step["loss"])), key=lambda i: step["loss"][i])]
        assert im["restart"]["particles"] == [worst]
    # its block is checked like any other, before any work; --help lists its flag
    assert bad[0] == 2 and bad[2].strip().splitlines() == [
        "error: restart.which=random is invalid: must be one of worst, best"]
    assert "--restart_step" in help_page


def test_the_toy_stage_is_not_registered_in_this_process():
    """The stage exists only where it was registered: the tool's own registry is untouched by this file."""
    from stages import STAGES

    assert "restart" not in STAGES and set(STAGES) == {"repulsion", "resampling", "pruning", "refine"}
