"""Entry point: particle LatentDAPS for phase retrieval. `python posterior_sample.py [--flag value | key=value ...]`."""
from __future__ import annotations

import sys
import tempfile
import traceback
from pathlib import Path

import hydra
from omegaconf import DictConfig

from pipeline.checks import fail
from pipeline.cli import FLAG_HELP, ConfigError, main_argv, validate

CONFIGS = Path(__file__).resolve().parent / "configs"


def print_table(metric: dict) -> None:
    print(f"{'image':>5} {'name':<16} {'modes 0/180/fail':>16} {'best PSNR':>9} {'chosen PSNR':>11} "
          f"{'oriented':>8} {'time s':>7}")
    for im in metric["images"]:
        m = im["modes"]
        print(f"{im['index']:>5} {im['name'][:16]:<16} {m['0']:>6}/{m['180']}/{m['fail']:<6} "
              f"{im['best_of_n']['psnr']:>9.2f} {im['best_by_loss']['psnr']:>11.2f} "
              f"{im['best_by_prior']['psnr']:>8.2f} {im['total_time_s']:>7.1f}")
    s = metric["summary"]
    print(f"summary: {s['images']} image(s), best-of-{s['particles']:g} PSNR {s['best_of_n_psnr_mean']:.2f} dB, "
          f"GT mode found {100 * s['success_rate']:.0f} % (prior's choice {100 * s['prior_choice_gt_rate']:.0f} %), "
          f"both modes {100 * s['both_modes_rate']:.0f} %, "
          f"failed particles {100 * s['fail_rate']:.0f} %, {s['time_s_per_image']:.1f} s/image")


def print_help() -> None:
    """The experiment flags and the config groups, before Hydra's own help."""
    print("posterior_sample.py: particle LatentDAPS for Fourier phase retrieval (README.md, docs/)\n")
    print("Experiment flags (--flag value, --flag=value, or flag=value):")
    for flag, text in FLAG_HELP.items():
        print(f"  --{flag:<18} {text}")
    print("\nConfig groups (group=choice):")
    for group in ("model", "sampler", "data", "task"):
        print(f"  {group:<8} " + ", ".join(sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))))
    print("\nAny other key of configs/default.yaml is a Hydra override, e.g. optimization.lr=1e-3.\n")


@hydra.main(version_base="1.3", config_path="configs", config_name="default")
def main(cfg: DictConfig) -> None:
    try:
        validate(cfg)
    except ConfigError as e:
        fail(str(e))
    from hydra.core.hydra_config import HydraConfig
    from data import DataError
    from models.ldm.checkpoint import CheckpointError
    from pipeline.run import default_name, run

    if cfg.name is None:
        cfg.name = default_name(cfg, dict(HydraConfig.get().runtime.choices))
    try:
        metric = run(cfg, sys.argv)
    except (ConfigError, DataError, FileNotFoundError, CheckpointError) as e:  # the message says what to do
        fail(str(e))
    except KeyboardInterrupt:
        print(f"interrupted: finished images are kept in {cfg.save_dir}/{cfg.name}/metric.json", file=sys.stderr)
        raise SystemExit(130)
    except Exception as e:                            # a bug, not bad input: one line, the traceback in a file
        fd, path = tempfile.mkstemp(prefix="posterior_sample-", suffix=".log")
        with open(fd, "w") as f:
            traceback.print_exc(file=f)
        fail(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} (full traceback in {path})", 1)
    print_table(metric)
    print(f"results: {cfg.save_dir}/{cfg.name}")


if __name__ == "__main__":
    sys.argv = main_argv()
    if "--help" in sys.argv or "-h" in sys.argv:
        print_help()
    main()
