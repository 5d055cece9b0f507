"""What a user meets: every setting checked before any file is written, a row per image as it finishes, the answer
as an image, one CPU thread by measurement, hints that name the next step, parse_metrics' headline."""
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from core.errors import ConfigError
from pipeline.validate import validate
from tests.conftest import ROOT, cli, compose

FAST = ["sampler.annealing.num_steps=5", "sampler.mcmc.num_steps=2"]


def entry(*args, cwd=ROOT):
    return subprocess.run([sys.executable, str(ROOT / "posterior_sample.py"), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def one_line(r) -> str:
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and r.stderr.startswith("error: "), r.stderr[-2000:]
    return r.stderr


# ---------------------------------------------------------------- 1. every setting, before any file

@pytest.mark.parametrize("override, named", [
    ("task.operator.sigma=-1", "task.operator.sigma=-1 is invalid"),
    ("task.operator.oversample=0", "task.operator.oversample=0 is invalid"),
    ("task.operator.oversample=abc", "task.operator.oversample=abc is invalid"),
    ("sampler.mcmc.lr=0", "sampler.mcmc.lr=0 is invalid"),
    ("sampler.mcmc.lr=-1", "sampler.mcmc.lr=-1 is invalid"),
    ("sampler.mcmc.lr=nan", "sampler.mcmc.lr=nan is invalid"),
    ("sampler.mcmc.num_steps=-1", "sampler.mcmc.num_steps=-1 is invalid"),
    ("sampler.annealing.num_steps=0", "sampler.annealing.num_steps=0 is invalid"),
    ("sampler.annealing.sigma_min=20", "sampler.annealing.sigma_max=10.0 is not above sigma_min=20"),
    ("eval.per_step=yes", "eval.per_step=yes is invalid"),
])
def test_every_setting_below_the_top_level_is_checked(override, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.").replace("(", r"\(")):
        validate(compose(override))


def test_bad_values_wrong_files_memory_and_tiny_images_stop_before_anything_is_written(tmp_path):
    # the entry point in this process (tests/conftest.cli): each input stops before any work
    assert "sampler.mcmc.lr=-1 is invalid" in one_line(cli("sampler.mcmc.lr=-1", f"save_dir={tmp_path}"))
    assert "particle_num=100000 x images_per_batch=1 needs about" in one_line(
        cli("particle_num=100000", f"save_dir={tmp_path}"))
    assert not list(tmp_path.iterdir())
    run = tmp_path / "two_mode_p4"
    run.mkdir()
    for text in ("[]", '{"images": 5}'):
        (run / "metric.json").write_text(text)
        assert "is not a run's metric.json" in one_line(cli(f"save_dir={tmp_path}"))
        assert (run / "metric.json").read_text() == text and sorted(p.name for p in run.iterdir()) == ["metric.json"]
    folder = tmp_path / "faces"
    folder.mkdir()
    Image.new("RGB", (16, 16)).save(folder / "tiny.png")
    r = cli("model=ffhq256ldm", "sampler=hmc", "data=demo-ffhq", f"data.root={folder}", "model.ckpt_path=null",
            "model.random_init_ok=true", "particle_num=1", f"save_dir={tmp_path / 'out'}")
    assert "is 16x16, smaller than the model's 64x64 latent grid" in one_line(r)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- 2. a row per image as it finishes

def test_each_image_is_reported_as_soon_as_it_is_finished(tmp_path):
    p = subprocess.Popen([sys.executable, str(ROOT / "posterior_sample.py"), "num_eval_images=3",
                          f"save_dir={tmp_path}"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         text=True)
    try:
        lines = [p.stdout.readline(), p.stdout.readline()]              # the header, then image 0's row
        running = p.poll() is None
        metric = json.loads((tmp_path / "two_mode_p4" / "metric.json").read_text())
    finally:
        rest = p.communicate(timeout=300)[0]
    assert lines[0].split()[:3] == ["image", "name", "answer"] and lines[1].split()[:2] == ["0", "astronaut"]
    assert running and len(metric["images"]) == 1          # printed while images 1 and 2 were still to come
    assert [line.split()[0] for line in rest.splitlines()[:2]] == ["1", "2"] and p.returncode == 0


# ---------------------------------------------------------------- 3. the answer as an image

def test_answer_png_is_the_chosen_particle_turned_as_the_prior_prefers(tmp_path):
    # benchmark image 4 (coins): its lowest-loss particle is sampled upside down, the prior (upright twice as likely)
    # turns it
    r = cli("data.start_index=4", "model.rotated_weight=0.5", f"save_dir={tmp_path}", "name=a")
    assert r.returncode == 0, r.stderr[-2000:]
    run = tmp_path / "a"
    turned = 0
    for im in json.loads((run / "metric.json").read_text())["images"]:
        folder = run / "images" / f"{im['index']:05d}"
        answer = np.asarray(Image.open(folder / "answer.png"))
        particle = np.asarray(Image.open(folder / f"particle_{im['best_by_prior']['particle']}.png"))
        rotated = im["best_by_prior"]["rotated"]
        factor = -(-128 // particle.shape[0])              # the answer is upscaled to >= 128 px, every pixel a square
        assert answer.shape[0] == factor * particle.shape[0] >= 128
        expected = particle[::-1, ::-1] if rotated else particle
        assert np.array_equal(answer, expected.repeat(factor, 0).repeat(factor, 1))
        turned += rotated
    assert turned == 1                     # the prior turned the answer: the comparison above can tell
    assert "answer dB" in r.stdout.splitlines()[0] and "DAPS best-of-4 dB" in r.stdout.splitlines()[0]


# ---------------------------------------------------------------- 4. one CPU thread for the mini LDMs, by measurement

def test_the_mini_presets_run_one_thread_as_measured():
    perf = (ROOT / "docs" / "performance.md").read_text()
    assert "11.3 s per image" in perf and "34.0 s per image" in perf          # the measurement behind the default
    for model in ("naturalldm", "digits32ldm", "two_mode", "two_mode_latent"):
        assert compose(f"model={model}").model.cpu_threads == 1, model


# ---------------------------------------------------------------- 5. hints that name the next step

def test_hints_name_the_next_step_that_works(tmp_path):
    # the entry point in this process (tests/conftest.cli): each input stops before any work
    assert "use model=naturalldm sampler=naturalldm data=natural" in one_line(cli("model=naturalldm"))
    # the sampler alone: the combination it runs with is named, not only the default model's
    assert "model=naturalldm sampler=naturalldm data=natural" in \
        one_line(cli("sampler=naturalldm")).split("(this model's)")[1]
    # a mistyped flag, key or choice: the closest one is named (difflib)
    assert "unknown flag --particle_nun (did you mean --particle_num?)" in one_line(cli("--particle_nun", "4"))
    assert "unknown key repulsion.mod (did you mean repulsion.mode?)" in one_line(cli("repulsion.mod=x"))
    assert "sampler=natural is no choice of sampler (did you mean naturalldm?)" in one_line(cli("sampler=natural"))
    r = cli("model=ffhq256ldm", "sampler=hmc", "data=test-ffhq", "model.ckpt_path=null", "particle_num=1",
            "model.random_init_ok=true", f"data.root={tmp_path / 'none'}")   # one particle: fits a busy machine
    assert "bash scripts/download_test_sets.sh ffhq" in one_line(r)       # one line: no LPIPS note before it
    assert "data.start_index=-1 is invalid: must be an integer >= 0" in one_line(cli("data.start_index=-1"))
    script = ROOT / "scripts" / "exp1_repulsion.sh"
    for args, named in ((["2", "--demo", "nat"], "--demo takes latent, digits or natural"),
                        (["2", "--demo", "natural", "--data", "ffhq"], "--demo runs on its own data")):
        r = subprocess.run(["bash", str(script), *args, "--dry-run"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and named in r.stderr
    pipe = subprocess.run(f"{sys.executable} {ROOT / 'posterior_sample.py'} -h | head -3", shell=True,
                          capture_output=True, text=True, timeout=60)
    assert pipe.stderr == "" and len(pipe.stdout.splitlines()) == 3


def test_settings_show_each_value_under_the_choices_given():
    r = cli("--settings", "model=naturalldm", "sampler=naturalldm", "data=natural", "--particle_num", "8")
    assert r.returncode == 0, r.stderr
    lines = {ln.split(" = ")[0].strip(): ln.split(" = ", 1)[1] for ln in r.stdout.splitlines() if " = " in ln}
    assert lines["particle_num"].startswith("8: an integer >= 1")                     # as given
    assert lines["repulsion_scale"].startswith("0.0: ")                                 # the default
    assert lines["sampler.mcmc.lr"].startswith("0.0001: ")                              # the preset's
    assert lines["model.ckpt_path"].startswith('"weights/naturalldm/model.ckpt": ')
    assert lines["trust.threshold"].startswith("0.8: ")


def test_a_run_on_auto_continues_with_device_cpu(tmp_path):
    first = cli(*FAST, f"save_dir={tmp_path}", "name=r", "device=auto")
    again = cli(*FAST, f"save_dir={tmp_path}", "name=r", "device=cpu", "num_eval_images=2")
    assert first.returncode == 0 and again.returncode == 0, again.stderr[-2000:]
    assert "continuing" in again.stderr
    assert len(json.loads((tmp_path / "r" / "metric.json").read_text())["images"]) == 2


# ---------------------------------------------------------------- 6. reading results

def test_parse_metrics_headline_names_the_differing_settings_with_intervals(tmp_path):
    import parse_metrics
    from readout import load, tables

    for p in (1, 2):
        assert cli(*FAST, f"particle_num={p}", "num_eval_images=2", f"save_dir={tmp_path}", "save_images=false",
                     f"name=p{p}").returncode == 0
    out = subprocess.run([sys.executable, str(ROOT / "parse_metrics.py"), str(tmp_path), "--out",
                          str(tmp_path / "report")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("| settings | images | chosen right [95 % CI] | found [95 % CI]")
    assert lines[2].startswith("| particle_num=1 | 2 |") and lines[3].startswith("| particle_num=2 | 2 |")
    assert "[" in lines[2].split("|")[3] and not lines[4]                # a short table: one row per run
    # then every answer that is not `determined`, with its label, from the records
    labels = {im["index"]: im["trust"]["label"] for im in json.loads((tmp_path / "p1" / "metric.json").read_text())
              ["images"]}
    if any(v != "determined" for v in labels.values()):
        assert lines[5].startswith("Answers to act on") and lines[6].startswith(f"{tmp_path.name}/p1: not determined")
    assert (tmp_path / "report" / "headline.png").is_file()
    full = parse_metrics.main([str(tmp_path), "--all"])
    assert full == 0
    experiments = load.load_experiments([str(tmp_path)])
    header, _ = tables.table_rows(experiments)
    assert {"failed: search", "failed: twin", "representable"} <= set(header)


def test_parse_metrics_pairs_runs_on_their_shared_measurements(tmp_path, capsys):
    """--reference: a run on the same images and seed is compared pairwise (found, the choice, chosen right, best
    PSNR up to symmetry, with intervals and exact tests); one on another seed shares no measurement and says so."""
    runs = {"ref/p4": ("particle_num=4", "seed=0"), "mine/p2": ("particle_num=2", "seed=0"),
            "other/p2": ("particle_num=2", "seed=1")}
    for name, args in runs.items():
        folder, run = name.split("/")
        assert cli(*FAST, *args, "num_eval_images=3", "images_per_batch=3", f"save_dir={tmp_path / folder}",
                     "save_images=false", f"name={run}").returncode == 0
    import parse_metrics                           # its command line in this process

    capsys.readouterr()
    assert parse_metrics.main([str(tmp_path / "mine"), str(tmp_path / "other"), "--reference", str(tmp_path / "ref")]) == 0
    text = capsys.readouterr().out.split("Paired against ref/p4")[1]
    row = next(ln for ln in text.splitlines() if ln.startswith("| mine/p2 |"))
    assert row.startswith("| mine/p2 | 3 (3) | 50 % |")                         # half the reference's compute
    ref = json.loads((tmp_path / "ref" / "p4" / "metric.json").read_text())["images"]
    mine = json.loads((tmp_path / "mine" / "p2" / "metric.json").read_text())["images"]
    found = sum(a["found"] for a in mine) - sum(b["found"] for b in ref)
    from analysis.paired import bound
    from evaluation.summary import explore_spread
    cells = row.split(" | ")
    assert cells[6].startswith(f"{bound(100 * found / 3, 1)} [")
    assert cells[6].endswith(("better", "worse", "unresolved"))     # no margin declared: no equivalence
    # time, memory and spread beside compute: the spread's ratio is the two runs' mean explore-phase distances
    assert " s (" in cells[3] and " MB (" in cells[4]
    mean = lambda ims: sum(explore_spread(im) for im in ims) / len(ims)  # noqa: E731
    assert cells[5] == f"{mean(mine):.3g} (×{mean(mine) / mean(ref):.2f})"
    assert "no measurement shared with the reference (other images or seeds, so no paired comparison): other/p2" \
        in text


def test_grid_captions_keep_their_spaces_wrap_and_colour_the_verdict():
    import torch

    from tracking.images import COLOURS, _font, _wrap, labelled_grid

    font = _font()
    assert _wrap("the answer, as sampled", font, 1000) == ["the answer, as sampled"]
    assert all(font.getlength(piece) <= 128 for piece in _wrap("trust: orientation undetermined " * 3, font, 128))
    grid = np.asarray(labelled_grid([torch.zeros(3, 32, 32)] * 2, [("right",), ("wrong",)]))
    caption = grid[140:]
    assert (caption == COLOURS["right"]).all(-1).any() and (caption == COLOURS["wrong"]).all(-1).any()
