"""Entry point: particle LatentDAPS for phase retrieval. `python posterior_sample.py [--flag value | key=value ...]`."""
from __future__ import annotations

import sys
import tempfile
import traceback
from pathlib import Path

import hydra
from omegaconf import DictConfig

from core.errors import ToolError
from pipeline.cli import FLAG_HELP, fail, main_argv

CONFIGS = Path(__file__).resolve().parent / "configs"


def print_table(metric: dict) -> None:
    """Per image: the particle the tool chooses without the ground truth first, then the search, why particles
    failed, and DAPS's oracle."""
    print(f"{'image':>5} {'name':<16} {'chosen':>6} {'chosen PSNR':>11} {'found':>5} {'modes 0/180/fail':>16} "
          f"{'why failed t/u/f/s':>18} {'best PSNR':>9} {'time s':>7}")
    for im in metric["images"]:
        m, c, f = im["modes"], im["best_by_prior"], im.get("failures", {})
        kinds = "/".join(str(f.get(k, 0)) for k in ("twin", "unrepresentable", "fits", "search"))
        print(f"{im['index']:>5} {im['name'][:16]:<16} {'right' if c['mode'] == '0' else 'wrong':>6} "
              f"{c['psnr']:>11.2f} {'yes' if im['found'] else 'no':>5} {m['0']:>6}/{m['180']}/{m['fail']:<6} "
              f"{kinds:>18} {im['best_of_n']['psnr']:>9.2f} {im['total_time_s']:>7.1f}")
    s = metric["summary"]
    print(f"summary: {s['images']} image(s): the chosen particle is right in {100 * s['prior_success_rate']:.0f} % "
          f"({s['prior_choice_psnr_mean']:.2f} dB); some particle found it in {100 * s['search_success_rate']:.0f} % "
          f"(particle success {100 * s['particle_success_rate']:.0f} %); best-of-{s['particles']:g} PSNR "
          f"{s['best_of_n_psnr_mean']:.2f} dB; {s['time_s_per_image']:.1f} s/image")
    print("why failed: t twin (a measurement-identical wrong image), u unrepresentable (the model cannot make the "
          "truth), f fits (within the noise: the prior must tell), s search (a better fit was missed)")
    note = representable_note(s)
    if note:
        print(f"note: {note}", file=sys.stderr)


def representable_note(summary: dict) -> str | None:
    """One line when under 90 % of the images are ones the model can make: then failures are the first stage's."""
    rate = summary.get("representable_rate")
    if rate is None or rate >= 0.9:
        return None
    return (f"the model can make only {100 * rate:.0f} % of these ground truths (its first stage's reconstruction "
            f"fits y within the noise): failures there are the autoencoder's, not the sampler's; "
            f"data.ground_truth=decoded benchmarks on truths it can make")


def interrupted_note(cfg) -> str:
    """What an interrupt leaves, as it is: the finished images in metric.json, or nothing."""
    from pathlib import Path

    from tracking.metric_file import read_json

    path = Path(cfg.save_dir) / str(cfg.name) / "metric.json"
    try:
        done = len(read_json(path).get("images", [])) if cfg.name is not None and path.exists() else 0
    except (OSError, ValueError):
        done = 0
    if not done:
        return "no image had finished, so no result was kept"
    return f"{done} finished image(s) are kept in {path}; the same command continues the run"


HELP_EXAMPLES = """Examples:
  python posterior_sample.py --num_eval_images 3                   # the embedded two-mode benchmark, CPU seconds
  python posterior_sample.py model=digits32ldm sampler=digits32ldm data=digits --num_eval_images 2
                                                                   # the mini LDM shipped in weights/, CPU
  python posterior_sample.py model=ffhq256ldm sampler=hmc data=demo-ffhq data.root=PATH --particle_num 4
                                                                   # a real LDM (bash scripts/download_checkpoints.sh)

Models, samplers and data that go together:
  model=two_mode         sampler=two_mode         data=two_mode          (the default)
  model=two_mode_latent  sampler=two_mode_latent  data=two_mode_latent
  model=digits32ldm      sampler=digits32ldm      data=digits
  model=naturalldm       sampler=naturalldm       data=natural
  model=ffhq256ldm       sampler=langevin|hmc     data=demo-ffhq|test-ffhq|ffhq          (256x256 images)
  model=imagenet256ldm   sampler=langevin|hmc     data=demo-imagenet|test-imagenet|imagenet
"""


def print_help() -> None:
    """A short page: examples, the valid combinations, the experiment flags; the full config behind --cfg job."""
    print("posterior_sample.py: particle LatentDAPS for Fourier phase retrieval (README.md, docs/)\n")
    print(HELP_EXAMPLES)
    print("Experiment flags (--flag value, --flag=value, or flag=value):")
    for flag, text in FLAG_HELP.items():
        print(f"  --{flag:<18} {text}")
    print("\nAny other key of configs/ is an override, e.g. optimization.lr=1e-3; --cfg job prints the whole resolved "
          "config\n(with the overrides given), --hydra-help Hydra's own options.")


@hydra.main(version_base="1.3", config_path="configs", config_name="default")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig
    from pipeline.run import run

    try:
        metric = run(cfg, sys.argv, dict(HydraConfig.get().runtime.choices))
    except ToolError as e:                            # bad input: the message says what to do
        fail(str(e))
    except KeyboardInterrupt:
        print(f"interrupted: {interrupted_note(cfg)}", file=sys.stderr)
        raise SystemExit(130)
    except Exception as e:                            # a bug, not bad input: one line, the traceback in a file
        fd, path = tempfile.mkstemp(prefix="posterior_sample-", suffix=".log")
        with open(fd, "w") as f:
            traceback.print_exc(file=f)
        fail(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} (full traceback in {path})", 1)
    print_table(metric)
    print(f"results: {cfg.save_dir}/{cfg.name}")


if __name__ == "__main__":
    if "--help" in sys.argv[1:] or "-h" in sys.argv[1:]:
        print_help()
        raise SystemExit(0)
    sys.argv = main_argv(CONFIGS)
    main()
