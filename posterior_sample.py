"""Entry point: particle LatentDAPS for phase retrieval. `python posterior_sample.py [--flag value | key=value ...]`."""
from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from pipeline.cli import ConfigError, main_argv, validate


def print_table(metric: dict) -> None:
    print(f"{'image':>5} {'name':<16} {'modes 0/180/fail':>16} {'best PSNR':>9} {'chosen PSNR':>11} {'time s':>7}")
    for im in metric["images"]:
        m = im["modes"]
        print(f"{im['index']:>5} {im['name'][:16]:<16} {m['0']:>6}/{m['180']}/{m['fail']:<6} "
              f"{im['best_oracle']['psnr']:>9.2f} {im['best_by_loss']['psnr']:>11.2f} {im['total_time_s']:>7.1f}")
    s = metric["summary"]
    print(f"summary: {s['images']} image(s), best-of-{s['particles']:g} PSNR {s['best_of_n_psnr_mean']:.2f} dB, "
          f"GT mode found {100 * s['success_rate']:.0f} %, both modes {100 * s['both_modes_rate']:.0f} %, "
          f"failed particles {100 * s['fail_rate']:.0f} %, {s['time_s_per_image']:.1f} s/image")


@hydra.main(version_base="1.3", config_path="configs", config_name="default")
def main(cfg: DictConfig) -> None:
    try:
        validate(cfg)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2)
    from pipeline.run import run
    from data import DataError
    from models.ldm.checkpoint import CheckpointError

    try:
        metric = run(cfg, sys.argv)
    except (ConfigError, DataError, FileNotFoundError, CheckpointError) as e:  # the message says what to do
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2)
    except KeyboardInterrupt:
        print(f"interrupted: finished images are kept in {cfg.save_dir}/{cfg.name}/metric.json", file=sys.stderr)
        raise SystemExit(130)
    print_table(metric)
    print(f"results: {cfg.save_dir}/{cfg.name}")


if __name__ == "__main__":
    sys.argv = main_argv()
    main()
