"""A study: configurations run on the same measurements (images x seeds), each (configuration, seed) an ordinary run
folder, so an interrupted or repeated study continues where it stopped and several workers can share the jobs; and
its records read back, paired by measurement (evaluation/paired.py compares them)."""
from __future__ import annotations

import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.stacks import stack
from tracking.metric_file import read_json

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Configuration:
    """label: its row in the tables; family: its line in the plots; overrides: Hydra overrides of the model's stack;
    images: how many images of the data set (from the study's start) it runs on."""

    label: str
    family: str
    overrides: tuple[str, ...]
    images: int
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9.]+", "-", self.label).strip("-")


def compose_config(model: str, overrides) -> object:
    from pipeline.schema import compose

    return compose(*stack(model), *overrides)


def job_config(model: str, c: Configuration, seed: int, start: int, out_dir: Path, images_per_batch: int,
               common=()):
    cfg = compose_config(model, [*c.overrides, *common, f"seed={seed}", f"num_eval_images={c.images}",
                                 f"data.start_index={start}", "save_images=false", f"save_dir={out_dir}",
                                 f"name={c.slug}_s{seed}", f"images_per_batch={min(images_per_batch, c.images)}"])
    if "cpu_threads" in cfg.model:            # one thread per worker: the workers are the parallelism
        cfg.model.cpu_threads = 1
    return cfg


def _claim(lock: Path) -> bool:
    """Take a job's lock file (its worker's pid); a lock whose worker is gone is taken over."""
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        try:
            pid = int(lock.read_text() or 0)
            os.kill(pid, 0)
            return False
        except (ValueError, ProcessLookupError, PermissionError, FileNotFoundError):
            lock.unlink(missing_ok=True)
            return _claim(lock)
    with os.fdopen(fd, "w") as f:
        f.write(str(os.getpid()))
    return True


def done(out_dir: Path, c: Configuration, seed: int) -> bool:
    path = out_dir / f"{c.slug}_s{seed}" / "metric.json"
    return path.exists() and len(read_json(path).get("images", [])) >= c.images


def run_study(model: str, configurations: list[Configuration], seeds: list[int], start: int, out_dir: Path,
              images_per_batch: int = 4, common=()) -> None:
    """Run every (configuration, seed) not done yet; start as many workers as there are cores, each with one thread
    (OMP_NUM_THREADS=1): each takes the next free job."""
    import torch

    from pipeline.config import validate
    from pipeline.run import run

    torch.set_num_threads(1)
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(c, s) for c in configurations for s in seeds]
    for c, s in jobs:                                   # every setting checked before the first job runs
        validate(job_config(model, c, s, start, out_dir, images_per_batch, common))
    t0 = time.perf_counter()
    for i, (c, seed) in enumerate(jobs):
        lock = out_dir / f"{c.slug}_s{seed}.lock"
        if done(out_dir, c, seed) or not _claim(lock):
            continue
        try:
            run(job_config(model, c, seed, start, out_dir, images_per_batch, common))
        finally:
            lock.unlink(missing_ok=True)
        print(f"[study] {i + 1}/{len(jobs)} {c.label}, seed {seed}: done, {time.perf_counter() - t0:.0f} s",
              file=sys.stderr, flush=True)


def records(out_dir: Path, configurations: list[Configuration], seeds: list[int]) -> dict[str, list[dict]]:
    """Each configuration's image records (with their seed) from the runs that exist so far."""
    out = {}
    for c in configurations:
        recs = []
        for s in seeds:
            path = out_dir / f"{c.slug}_s{s}" / "metric.json"
            if path.exists():
                recs += [{"seed": s, **{k: v for k, v in im.items() if k != "steps"}}
                         for im in read_json(path).get("images", [])]
        out[c.label] = recs
    return out
