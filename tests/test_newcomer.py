"""A newcomer's first ten minutes: the README's path works as written, every bad input is one line and exit 2, the
messages say what is true, --help is a short page, parse_metrics' small print is right."""
import json
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT, cli

TINY = ["sampler.annealing.num_steps=5", "sampler.mcmc.num_steps=2"]
TINY_NAME = "two_mode_p4_annealing.num_steps5_mcmc.num_steps2"        # the default name of a TINY run


def entry(*args, cwd=ROOT):
    return subprocess.run([sys.executable, str(ROOT / "posterior_sample.py"), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_the_readme_path_works_as_written(tmp_path):
    """The set-up run, then the worked example in the same folder: the example extends the set-up run (same
    settings) instead of being refused, and says so in one line."""
    first = entry(*TINY, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    # the default name says what ran: the TINY steps too (README's plain command: results/two_mode_p4)
    assert f"results: results/{TINY_NAME}" in first.stdout
    example = entry("--num_eval_images", 3, *TINY, cwd=tmp_path)
    assert example.returncode == 0, example.stderr[-2000:]
    notes = [line for line in example.stderr.splitlines() if line.startswith("note: continuing")]
    assert len(notes) == 1 and "1 image(s)" in notes[0]
    rows = [line for line in example.stdout.splitlines() if re.match(r"\s+\d+ ", line)]
    assert [int(r.split()[0]) for r in rows] == [0, 1, 2]
    metric = json.loads((tmp_path / "results" / TINY_NAME / "metric.json").read_text())
    assert len(metric["images"]) == 3 and len(metric["provenance"]["earlier_runs"]) == 1
    # other settings in the same folder are still refused, in one line
    other = entry("--num_eval_images", 3, "--particle_num", 2, f"name={TINY_NAME}", *TINY, cwd=tmp_path)
    assert other.returncode == 2 and other.stderr.count("\n") == 1 and "(particle_num)" in other.stderr


BAD = [
    (["frobnicate=3"], "unknown key frobnicate"),
    (["data.root=/x"], "unknown key data.root: not a setting of data=two_mode"),
    (["sampler.mcmc.nope=1"], "unknown key sampler.mcmc.nope"),
    (["+frobnicate=3"], "'+frobnicate=3'"),
    (["model=nope"], "model=nope is no choice of model"),
    (["particle_num"], "cannot read 'particle_num'"),
    (["--pruning_keep", "9", "--particle_num", "4"], "pruning_keep=9 is invalid with particle_num=4"),
    (["--particle_num", "0"], "particle_num=0 is invalid: must be an integer >= 1"),
    (["--bogus", "1"], "unknown flag --bogus"),
]


@pytest.mark.parametrize("args, named", BAD)
def test_every_unknown_key_and_bad_value_is_one_line_and_exit_2(args, named, tmp_path, capsys, monkeypatch):
    """The command line's own check (pipeline/cli.main_argv, before Hydra starts) stops most of them, in this
    process; the rest, and one of those, through the whole command line (below)."""
    from pipeline.cli import main_argv

    monkeypatch.setattr(sys, "argv", ["posterior_sample.py", *args, f"save_dir={tmp_path}"])
    try:
        main_argv(ROOT / "configs")
    except SystemExit as e:
        err = capsys.readouterr().err
        assert e.code == 2 and err.count("\n") == 1 and err.startswith("error: ") and named in err, err
        assert not list(tmp_path.iterdir())
        return
    r = cli(*args, f"save_dir={tmp_path}")            # checked after Hydra composed it: the whole command line
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and r.stderr.startswith("error: "), r.stderr[-2000:]
    assert named in r.stderr and not list(tmp_path.iterdir())


def test_a_bad_key_is_one_line_through_the_whole_command_line(tmp_path):
    r = entry("frobnicate=3", f"save_dir={tmp_path}")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "unknown key frobnicate" in r.stderr
    assert not list(tmp_path.iterdir())


def test_resume_on_a_new_folder_says_so(tmp_path):
    r = cli("resume=true", "name=fresh", f"save_dir={tmp_path}", *TINY)
    assert r.returncode == 0, r.stderr[-2000:]
    notes = [line for line in r.stderr.splitlines() if "resume=true" in line]
    assert len(notes) == 1 and "holds no earlier run: starting a new one" in notes[0]


def test_an_interrupt_says_what_was_kept(tmp_path):
    from omegaconf import OmegaConf

    import posterior_sample

    cfg = OmegaConf.create({"save_dir": str(tmp_path), "name": "x"})
    assert posterior_sample.interrupted_note(cfg) == "no image had finished, so no result was kept"
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "metric.json").write_text(json.dumps({"images": []}))
    assert posterior_sample.interrupted_note(cfg) == "no image had finished, so no result was kept"
    (tmp_path / "x" / "metric.json").write_text(json.dumps({"images": [{"index": 0}, {"index": 1}]}))
    assert posterior_sample.interrupted_note(cfg).startswith(f"2 finished image(s) are kept in {tmp_path}/x/metric.json")
    assert posterior_sample.interrupted_note(OmegaConf.create({"save_dir": str(tmp_path), "name": None})).startswith(
        "no image had finished")


def test_help_is_a_short_page_with_examples_and_combinations(capsys):
    r = cli("--help")
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert len(lines) <= 45 and "particle_num:" not in r.stdout          # no config dump
    commands = [line for line in lines if line.strip().startswith("python posterior_sample.py")]
    assert len(commands) == 3 and any("digits32ldm" in c for c in commands) and any("ffhq256ldm" in c for c in commands)
    for combo in ("model=digits32ldm      sampler=digits32ldm      data=digits",
                  "model=ffhq256ldm       sampler=langevin|hmc"):
        assert combo in r.stdout
    assert "--cfg job" in r.stdout
    from pipeline.schema import flags
    for flag, setting in flags().items():                 # every flag's line says its default
        line = next(ln for ln in lines if ln.strip().startswith(f"--{flag} "))
        assert "default" in line, line
    assert "--seed               seed of every particle's and measurement's generator (default 42)" in r.stdout
    import posterior_sample
    posterior_sample.print_settings(["task=gaussian_deblur"])  # the task's operator block too, as chosen
    settings = capsys.readouterr().out
    assert "  task.operator.kernel_size = \"auto\": auto or an integer >= 1" in settings
    assert "  task.operator.name = \"gaussian_blur\"" in settings
    dump = entry("--cfg", "job", "particle_num=3")
    assert dump.returncode == 0 and "particle_num: 3" in dump.stdout


def test_parse_metrics_small_print():
    from readout.plots import curve_labels, time_scale
    from readout.tables import _fmt

    assert _fmt(0.3407, "3g", {}) == "0.341" and _fmt(5226.4, "3g", {}) == "5226"
    assert time_scale([1.0, 1.5]) == "linear" and time_scale([0.5, 40.0]) == "log"
    labels = curve_labels(["a", "b", "c"], [[1.0, 2.0], [1.0, 2.0], [1.0, 3.0]])
    assert labels == ["a", "b (= a)", "c"]


def test_workflow_doc_states_the_scripts_defaults():
    doc = (ROOT / "docs" / "workflow.md").read_text()
    for script in sorted((ROOT / "scripts").glob("exp[0-9]_*.sh")):
        text = script.read_text()
        n = re.search(r"^DEFAULT_N=(\S+)", text, re.M).group(1)
        data = re.search(r"^DEFAULT_DATA=(\S+)", text, re.M).group(1)
        row = next(line for line in doc.splitlines() if line.startswith(f"| `scripts/{script.name}`"))
        assert row.rstrip(" |").endswith(f"{n} / {data}"), (script.name, row)


def test_a_run_that_kept_nothing_leaves_no_folder(tmp_path):
    """Ctrl-C or bad input found before the first image: the tool's own files go, and the folder if that empties
    it; a finished image, or a file that is not the tool's, keeps what it is in."""
    from pipeline.run_folder import discard_if_nothing_kept

    empty = tmp_path / "empty"
    (empty / "images").mkdir(parents=True)
    (empty / "config.yaml").write_text("a: 1\n")
    (empty / "metric.json").write_text(json.dumps({"images": []}))
    discard_if_nothing_kept(empty)
    assert not empty.exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "metric.json").write_text(json.dumps({"images": [{"index": 0}]}))
    (kept / "config.yaml").write_text("a: 1\n")
    discard_if_nothing_kept(kept)
    assert sorted(p.name for p in kept.iterdir()) == ["config.yaml", "metric.json"]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's")
    (mine / "config.yaml").write_text("a: 1\n")
    discard_if_nothing_kept(mine)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_a_file_for_a_name_and_a_nameless_multirun_are_one_line(tmp_path, capsys, monkeypatch):
    """Both stop before any work (posterior_sample.py turns a ToolError into its one line and exit 2)."""
    from core.errors import ConfigError
    from pipeline.cli import main_argv
    from pipeline.run import run
    from tests.conftest import compose

    (tmp_path / "taken").write_text("not a run")
    with pytest.raises(ConfigError) as e:
        run(compose("name=taken", f"save_dir={tmp_path}", *TINY))
    assert str(e.value) == f"name=taken: {tmp_path}/taken is a file, not a run folder; pass another name="
    monkeypatch.setattr(sys, "argv", ["posterior_sample.py", "--multirun", "repulsion_scale=0,0.3",
                                      f"save_dir={tmp_path / 'sweep'}", *TINY])
    with pytest.raises(SystemExit) as exit_:
        main_argv(ROOT / "configs")
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(lines) == 1 and lines[0].startswith("error: --multirun needs name=")
    assert not (tmp_path / "sweep").exists()
