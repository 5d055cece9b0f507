"""No run destroys another, every bad input stops before any work with one line, outputs others can read."""
import json
import os
import stat
import subprocess
import sys

import pytest

import pipeline.run as pipeline_run
import pipeline.run_folder as pipeline_run_folder
from core.errors import ConfigError
from tests.conftest import ROOT, compose
from tracking.metric_file import read_json

TINY = ["sampler.annealing.num_steps=5", "sampler.mcmc.num_steps=2"]


def entry(*args, env=None):
    return subprocess.run([sys.executable, "posterior_sample.py", *map(str, args), *TINY], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env=env)


def run(*args):
    """The same command line in this process (tests/conftest.cli): no interpreter of its own needed."""
    from tests.conftest import cli

    return cli(*args, *TINY, cwd=ROOT)


def snapshot(folder):
    """Every file under folder with its bytes: 'unchanged' means byte-identical."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def corrupt_data(tmp_path_factory):
    """An image folder whose third image is not an image."""
    from PIL import Image

    root = tmp_path_factory.mktemp("imgs")
    for i in range(3):
        Image.new("RGB", (64, 64), (40 * i, 90, 200)).save(root / f"{i:05d}.png")
    (root / "00002.png").write_bytes(b"\x89PNG broken")
    return root


def bad_inputs(tmp_path, corrupt):
    bad_weights = tmp_path / "vgg.pt"
    bad_weights.write_bytes(b"not torch")
    readonly = tmp_path / "ro"
    readonly.mkdir()
    readonly.chmod(0o555)
    return [
        (["device=cuda"], "device=cuda but this machine has 0 CUDA device(s)"),
        (["device=gpu"], "device=gpu is invalid"),
        (["--seed", "-1"], "seed=-1 is invalid"),
        (["--repulsion_scale", "inf"], "repulsion_scale=inf is invalid"),
        (["--resume", "maybe"], "resume=maybe is invalid: must be true or false"),
        (["save_images=maybe"], "save_images=maybe is invalid: must be true or false"),
        ([f"eval.lpips_weights={bad_weights}"], "cannot be read as a VGG16 state dict"),
        ([f"save_dir={readonly}/sub"], "cannot be written"),
        (["model=ffhq256ldm", "sampler=langevin", "data=demo-ffhq", f"data.root={corrupt}", "num_eval_images=3",
          "model.ckpt_path=null", "model.random_init_ok=true", "particle_num=1"], "cannot read image"),
        (["model=ffhq256ldm", "sampler=langevin", "data=demo-ffhq", f"data.root={corrupt}", "num_eval_images=3",
          "model.ckpt_path=/no/such.ckpt", "particle_num=1"], "scripts/download_checkpoints.sh ffhq"),
    ]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders; see the in-process check below")
def test_readonly_save_dir_is_refused_as_user(tmp_path):
    from core.errors import ConfigError
    from pipeline.validate import check_writable

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    with pytest.raises(ConfigError, match="cannot be written"):
        check_writable(ro / "sub")


def test_every_bad_input_stops_in_one_line_before_any_work(tmp_path, corrupt_data):
    """Exit status 2, one line on stderr, no traceback, and no result folder made: the entry point run in this
    process (tests/conftest.cli), as the command line runs it."""
    results = tmp_path / "results"
    cases = []
    for args, needle in bad_inputs(tmp_path, corrupt_data):
        if needle == "cannot be written" and os.geteuid() == 0:
            args = ["save_dir=/proc/results"]          # root may write anywhere a mode allows; /proc takes no files
        else:
            args = [*args, f"save_dir={results}"]
        cases.append((args, needle))
    outcomes = [run(*args) for args, _ in cases]
    for (args, needle), r in zip(cases, outcomes):
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2, (args, r.stderr[-2000:])
        assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], (args, r.stderr)
        assert "Traceback" not in r.stderr
        assert not results.exists(), args
    # the corrupt image is named, and found before the (random-weight) model is built
    image_case = next(r for (args, needle), r in zip(cases, outcomes) if needle == "cannot read image")
    assert "00002.png" in image_case.stderr


def test_a_repeated_run_leaves_the_first_untouched(tmp_path):
    r = run(f"save_dir={tmp_path}", "name=x", "--num_eval_images", 2)
    assert r.returncode == 0, r.stderr[-2000:]
    run_dir = tmp_path / "x"
    before = snapshot(run_dir)
    assert stat.S_IMODE((run_dir / "metric.json").stat().st_mode) == 0o666 & ~_umask()      # 0644 under 022
    # the same command again continues the run: nothing is redone, every image and file of the first stays
    first = read_json(run_dir / "metric.json")
    r = run(f"save_dir={tmp_path}", "name=x", "--num_eval_images", 2)
    assert r.returncode == 0, r.stderr[-2000:]
    assert [line for line in r.stderr.splitlines() if line.startswith("note: continuing")] != []
    again = read_json(run_dir / "metric.json")
    assert again["images"] == first["images"] and len(again["provenance"]["earlier_runs"]) == 1
    assert {k: v for k, v in snapshot(run_dir).items() if str(k) != "metric.json"} == \
        {k: v for k, v in before.items() if str(k) != "metric.json"}
    # other settings are refused in one line, and leave everything as it was
    before = snapshot(run_dir)
    r = run(f"save_dir={tmp_path}", "name=x", "--num_eval_images", 2, "--particle_num", 3)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "holds 2 image(s) run with other settings (particle_num)" in r.stderr and "overwrite=true" in r.stderr
    assert snapshot(run_dir) == before


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_default_names_say_what_ran_and_do_not_collide(tmp_path):
    cfg = compose(f"save_dir={tmp_path}", *TINY)
    assert cfg.name is None
    assert pipeline_run_folder.default_name(cfg) == "two_mode_langevin_p4"
    cfg = compose("repulsion_scale=0.3", "pruning_step=200", "refine_step=100")
    assert pipeline_run_folder.default_name(cfg, {"model": "two_mode", "sampler": "two_mode"}) == \
        "two_mode_p4_rep0.3_prune200k2_refine100"
    # a stage block's setting away from its default is in the name: an eps sweep or branching never collides
    swept = compose("pruning_step=200", "pruning.mode=branch", "refine_step=100", "refine.eps=0.001",
                    "refine.final=false")
    assert pipeline_run_folder.default_name(swept, {"model": "two_mode", "sampler": "two_mode"}) == \
        "two_mode_p4_prune200k2-modebranch_refine100-finalfalse-eps0.001"
    # a setting of the chosen groups moved on the command line is in the name too (where Hydra named the groups)
    groups = {"model": "two_mode", "task": "phase_retrieval", "sampler": "two_mode", "data": "two_mode"}
    moved = compose("sampler.mcmc.lr=1e-4", "task.operator.sigma=0.1", "data.start_index=3", "model.cpu_threads=2")
    assert pipeline_run_folder.default_name(moved, groups) == "two_mode_p4_operator.sigma0.1_mcmc.lr0.0001"
    # a restart on the same measurement (particle_offset) and another measurement (seed) are other folders
    again = compose("particle_offset=4", "seed=7")
    assert pipeline_run_folder.default_name(again, {"model": "two_mode", "sampler": "two_mode"}) == \
        "two_mode_p4o4_seed7"
    ldm = compose("model=ffhq256ldm", "sampler=hmc", "data=demo-ffhq")
    assert pipeline_run_folder.default_name(ldm, {"model": "ffhq256ldm", "sampler": "hmc"}) == "ffhq256ldm_demo-ffhq_hmc_p4"
    # two plain runs with different stage flags land in different folders
    assert run(f"save_dir={tmp_path}").returncode == 0
    assert run(f"save_dir={tmp_path}", "--repulsion_scale", 0.3).returncode == 0
    tiny = "annealing.num_steps5_mcmc.num_steps2"       # the TINY steps every run() passes, in the name too
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"two_mode_p4_{tiny}", f"two_mode_p4_rep0.3_{tiny}"]


def test_overwrite_clears_the_old_outputs_and_resume_extends(tmp_path):
    common = [f"save_dir={tmp_path}", "name=r", "save_images=true", *TINY]
    pipeline_run.run(compose(*common, "particle_num=4", "pruning_step=200", "num_eval_images=1"))
    img = tmp_path / "r" / "images" / "00000"
    assert any(p.name.startswith("pruned_particle_") for p in img.iterdir())
    # a new setting with overwrite=true: no PNG of the pruned run stays beside the new ones
    pipeline_run.run(compose(*common, "particle_num=3", "overwrite=true", "num_eval_images=1"))
    assert sorted(p.name for p in img.iterdir()) == ["answer.png", "grid.png", "gt.png", "measurement.png",
                                                     "particle_0.png", "particle_1.png", "particle_2.png"]
    from PIL import Image
    with Image.open(img / "grid.png") as grid:           # GT, |y|, the answer and 3 particles, tiles >= 128 px
        assert grid.width >= 6 * 128 and grid.height >= 128 + 40
    first = read_json(tmp_path / "r" / "metric.json")["images"]
    # more images, resumed: the first image is kept as it was, the second is added
    m = pipeline_run.run(compose(*common, "particle_num=3", "resume=true", "num_eval_images=2", "save_images=false"))
    assert [im["index"] for im in m["images"]] == [0, 1] and m["images"][0] == json.loads(json.dumps(first[0]))
    assert m["config"]["num_eval_images"] == 2
    with pytest.raises(ConfigError, match=r"\(particle_num\)"):   # a setting that changes results is still refused
        pipeline_run.run(compose(*common, "particle_num=2", "resume=true", "num_eval_images=3"))


def test_unexpected_errors_are_one_line_with_the_traceback_in_a_file(tmp_path):
    """A bug, not bad input: exit 1, one line naming the log that holds the traceback."""
    hook = tmp_path / "sitecustomize.py"
    hook.write_text("import pipeline.run as r\n"
                    "def boom(*a, **k):\n    raise RuntimeError('simulated bug')\n"
                    "r.run_batch = boom\n")
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}")
    r = entry(f"save_dir={tmp_path}/res", env=env)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    (line,) = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert "RuntimeError: simulated bug (full traceback in " in line
    log = line.rsplit("full traceback in ", 1)[1].rstrip(")")
    assert "simulated bug" in open(log).read() and "Traceback" in open(log).read()


def test_a_default_run_prints_no_warnings_and_help_lists_the_flags(tmp_path):
    r = entry(f"save_dir={tmp_path}")
    assert r.returncode == 0
    assert "Warning" not in r.stderr and "warn" not in r.stderr.lower()
    h = subprocess.run([sys.executable, "posterior_sample.py", "--help"], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert h.returncode == 0
    assert "--repulsion_scale" in h.stdout and "--pruning_step" in h.stdout and "test-imagenet" in h.stdout


# the house, ground floor first: a module may import its own floor's and the floors below, never one above
FLOORS = {"core": 0, "operators": 1, "models": 1, "data": 1, "sampler": 2, "tracking": 2, "particle": 3,
          "resample_opt": 3, "stages": 3, "evaluation": 3, "analysis": 3, "quality": 3, "pipeline": 4,
          "parse_metrics": 5, "posterior_sample": 5}


def project_imports() -> dict[str, set[str]]:
    """module (dotted) -> the project modules it imports, anywhere in its body (lazy imports included)."""
    import ast

    out = {}
    for path in [*ROOT.glob("*.py"), *ROOT.glob("*/*.py"), *ROOT.glob("*/*/*.py")]:
        rel = path.relative_to(ROOT).with_suffix("")
        if rel.parts[0] not in FLOORS or rel.name.startswith("test_"):      # a stage's own test is no module
            continue
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        package = parts if rel.name == "__init__" else parts[:-1]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join([*package[: len(package) - node.level + 1], *([base] if base else [])])
                found |= {base} | {f"{base}.{a.name}" for a in node.names}
        out[".".join(parts)] = {m for m in found if m.split(".")[0] in FLOORS}
    return out


def test_no_module_imports_upward_and_no_cycle():
    """Every project import goes to the same floor or one below (the error type and small helpers live on the
    ground floor, core/), and the module graph has no cycle (data.datasets <-> data.digits once had one)."""
    graph = project_imports()
    up = sorted(f"{m} -> {i}" for m, imps in graph.items() for i in imps
                if FLOORS[i.split(".")[0]] > FLOORS[m.split(".")[0]])
    assert not up, up
    modules = set(graph)

    def resolve(i):     # `from pkg import name` names a module when one exists, else the package
        return i if i in modules else i.rpartition(".")[0] if i.rpartition(".")[0] in modules else None

    # a package's __init__ importing its own modules is not a cycle through them
    edges = {m: {r for r in map(resolve, imps) if r and r != m and not r.startswith(m + ".")}
             for m, imps in graph.items()}
    state = {}

    def visit(m, path):
        state[m] = "open"
        for n in sorted(edges.get(m, ())):
            assert state.get(n) != "open", " -> ".join(path + [n])
            if n not in state:
                visit(n, path + [n])
        state[m] = "done"

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    assert "core.errors" in graph and not graph["core.errors"]          # the error type imports nothing of ours
    assert {"pipeline.validate", "pipeline.run_folder", "evaluation.record", "pipeline.sampling"} <= modules


def test_the_memory_check_counts_reclaimable_memory_and_names_the_need(monkeypatch):
    """The CPU's free memory is Linux's MemAvailable (page cache included), not the bare free pages that under-report
    a busy machine; a batch over it stops with the estimate per particle."""
    import pipeline.validate as config
    import torch

    meminfo = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in open("/proc/meminfo")}
    got = config.available_memory(torch.device("cpu"))
    assert abs(got - meminfo["MemAvailable"]) < 2 ** 28           # read moments apart: within 256 MiB
    cfg = compose("model=two_mode_latent", "data=two_mode_latent", "sampler=two_mode_latent", "particle_num=4")
    config.check_memory(cfg)                                       # a mini model fits
    monkeypatch.setattr(config, "available_memory", lambda device: 1)
    with pytest.raises(ConfigError, match=r"particle_num=4 x images_per_batch=1 needs about .* MiB per particle"):
        config.check_memory(cfg)
