"""A study: configurations run on the same measurements (images x seeds) of one model stack, cut into jobs of
(configuration, seed, image shard), each job an ordinary run folder, so a finished shard is never redone and an
interrupted one continues; its plan (jobs, measurements, device-hours from the cost model) before anything runs; its
records read back, paired by measurement (analysis/paired.py compares them). pipeline/cluster.py launches it."""
from __future__ import annotations

import copy
import re
import sys
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from pipeline.stacks import FULL_SIZE, stack
from tracking.metric_file import read_json

ROOT = Path(__file__).resolve().parents[1]

# TFLOP/s a device sustains on the LDM's networks, for plans before a study has measured its own:
# cuda: an H200 in TF32, the full-size FFHQ LDM (docs/performance.md, 2026-12-04: 129 TFLOP/s);
# cpu: one core of the 2-core development machine on the natural mini LDM (the frontier study's first shards,
# 2026-12-04, docs/particle_search.md)
RATES = {"cuda": 129.0, "cpu": 0.06}
MAX_IMAGES_PER_BATCH = 4      # the fastest measured per image on the H200 and both mini LDMs (docs/performance.md)


@dataclass(frozen=True)
class Configuration:
    """label: its row in the tables; family: its line in the plots; overrides: Hydra overrides of the model's
    stack."""

    label: str
    family: str
    overrides: tuple[str, ...]

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9.]+", "-", self.label).strip("-")


@dataclass(frozen=True)
class Job:
    """One run folder: a configuration's images first … first + count - 1 under one seed."""

    configuration: Configuration
    seed: int
    first: int
    count: int

    @property
    def name(self) -> str:
        return f"{self.configuration.slug}_s{self.seed}_i{self.first}-{self.first + self.count - 1}"


@dataclass(frozen=True)
class Study:
    """model: a stack of pipeline/stacks.py (sampler: langevin or hmc for the full-size ones); images start … start +
    images - 1 of its data set, under every seed, cut into shards of `shard` images; common: overrides for every
    configuration."""

    model: str
    configurations: tuple[Configuration, ...]
    seeds: tuple[int, ...]
    start: int
    images: int
    shard: int
    out: Path
    sampler: str | None = None
    images_per_batch: int = 4
    common: tuple[str, ...] = field(default=())
    device: str | None = None          # cpu or cuda; None: cuda for the full-size stacks, cpu for the others

    @property
    def gpu(self) -> bool:
        return (self.device or ("cuda" if self.model in FULL_SIZE else "cpu")) == "cuda"

    def jobs(self) -> list[Job]:
        stop = self.start + self.images
        return [Job(c, s, a, min(self.shard, stop - a)) for c in self.configurations for s in self.seeds
                for a in range(self.start, stop, self.shard)]


def compose_config(study: Study, overrides) -> object:
    """The config of the study's stack with these overrides (composed once per set of overrides: Hydra's compose
    takes a third of a second, and a plan asks for the same configs several times)."""
    return copy.deepcopy(_composed(tuple(stack(study.model, study.sampler)) + tuple(overrides)))


@lru_cache(maxsize=256)
def _composed(overrides: tuple[str, ...]):
    from pipeline.schema import compose

    return compose(*overrides)


@lru_cache(maxsize=1)
def _stand_in():
    """The two-mode latent benchmark's config, model, operator and first image, built once (the plan's stand-in)."""
    from pipeline.build import build

    cfg = _composed((*stack("two_mode_latent"), "device=cpu", "num_eval_images=1"))
    model, operator, dataset = build(cfg)
    return cfg, model, operator, dataset[0][1][None]


def job_config(study: Study, job: Job):
    """The run config of one job: its configuration's overrides, seed and shard, no images saved."""
    cfg = compose_config(study, [*job.configuration.overrides, *study.common])
    cfg.seed, cfg.num_eval_images, cfg.data.start_index = job.seed, job.count, job.first
    cfg.save_images, cfg.save_dir, cfg.name = False, str(study.out), job.name
    cfg.images_per_batch, cfg.device = min(study.images_per_batch, job.count), "auto" if study.gpu else "cpu"
    if not study.gpu and "cpu_threads" in cfg.model:    # one thread per worker: the workers are the parallelism
        cfg.model.cpu_threads = 1
    return cfg


def check_study(study: Study, machine: bool = True, checkpoint: bool = True) -> None:
    """Every configuration's settings against their declarations and each other (pipeline/validate.validate), before
    anything is counted or run; machine=False: not against this machine (its device, memory): a plan is made, and a
    SLURM array submitted, from a machine that will not run it; checkpoint: the model's checkpoint file exists (a
    cluster's filesystem is shared)."""
    import models
    from core.errors import ConfigError, ToolError
    from pipeline.validate import validate

    for c in study.configurations:
        cfg = job_config(study, Job(c, study.seeds[0], study.start, min(study.shard, study.images)))
        validate(cfg, machine)
        if checkpoint and not machine:
            models.check_config(cfg.model)
    try:                                               # the data range, before any worker meets its end
        size = data_set_size(study)
    except ToolError:
        if machine:                                    # its data must be here; a login node may not hold it
            raise
        return
    if study.start + study.images > size:
        raise ConfigError(f"images {study.start}-{study.start + study.images - 1} are not all in the data set, which "
                          f"holds {size} (0-{size - 1}): use --start and --images within it")


@lru_cache(maxsize=8)
def data_set_size(study: Study) -> int:
    """The images the study's data set holds (read once per study: a plan and its checks ask again); a ToolError
    where the data cannot be read here."""
    from pipeline.build import dataset_of

    whole = compose_config(study, [])
    whole.num_eval_images, whole.data.start_index = None, 0
    return len(dataset_of(whole))


def finished(study: Study, job: Job) -> int:
    """How many of the job's images its run folder holds."""
    path = study.out / job.name / "metric.json"
    return len(read_json(path).get("images", [])) if path.exists() else 0


def work(study: Study, jobs: list[Job]) -> None:
    """Run the given jobs one after the other in this process; a finished one is skipped, a started one continued
    (pipeline/run_folder.py)."""
    import torch

    from pipeline.run import run

    if not study.gpu:
        torch.set_num_threads(1)
    t0 = time.perf_counter()
    for i, job in enumerate(jobs):
        if finished(study, job) >= job.count:
            continue
        run(job_config(study, job))
        print(f"[study] {i + 1}/{len(jobs)} {job.name}: done, {time.perf_counter() - t0:.0f} s", file=sys.stderr,
              flush=True)


def records(study: Study) -> dict[str, list[dict]]:
    """Each configuration's image records (with their seed) from the shards finished so far, steps left out."""
    out = {}
    for c in study.configurations:
        recs = []
        for job in study.jobs():
            if job.configuration != c:
                continue
            path = study.out / job.name / "metric.json"
            if path.exists():
                recs += [{"seed": job.seed, **{k: v for k, v in im.items() if k != "steps"}}
                         for im in read_json(path).get("images", [])]
        out[c.label] = recs
    return out


# --- an archive of finished shards: a study that outlives its machine -----------------------------------------------

# what the report, the statistics and the trust labels read of each image record (analysis/paired.py,
# analysis/study_report.py): an archive keeps these, not the per-step records
KEPT = ("index", "name", "found", "modes", "failures", "best_by_loss", "best_by_prior", "choices", "trust", "compute",
        "compute_total", "total_time_s", "best_of_n", "representability", "provenance")
PARTICLE_KEPT = ("particle", "mode", "psnr", "class_psnr", "measurement_loss", "failure", "pruned_at", "failed",
                 "prior_log_ratio", "prior_log_ratio_se")


def compact(im: dict) -> dict:
    out = {k: im[k] for k in KEPT if k in im}
    out["particles"] = [{k: p[k] for k in PARTICLE_KEPT if k in p} for p in im["particles"]]
    return out


def archive(study: Study, path: Path) -> int:
    """Every finished shard's compact records, gzipped JSON keyed by job name (committed beside the report, so a
    study run on a machine that goes away can be reported and continued elsewhere); the shards archived."""
    import gzip
    import json

    shards = {}
    for job in study.jobs():
        if finished(study, job) >= job.count:
            metric = read_json(study.out / job.name / "metric.json")
            shards[job.name] = {"images": [compact(im) for im in metric["images"]]}
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        json.dump(shards, f, separators=(",", ":"))
    return len(shards)


def restore(study: Study, path: Path) -> int:
    """The archived shards this study's folder lacks, written back as finished run folders (never over one that
    exists); the shards restored."""
    import gzip
    import json

    from tracking.metric_file import write_json_atomic

    with gzip.open(path, "rt") as f:
        shards = json.load(f)
    names = {job.name for job in study.jobs()}
    done = 0
    for name, shard in shards.items():
        target = study.out / name / "metric.json"
        if name in names and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(target, {"images": shard["images"], "restored_from": str(path)})
            done += 1
    return done


# --- the plan: what a study will cost before it runs ---------------------------------------------------------------

def network_rows(study: Study, c: Configuration) -> dict[str, float]:
    """Rows per image of each network that configuration c causes on the study's model, counted without the model:
    the sampler's loop with c's stages and the stack's steps runs on the two-mode latent benchmark (its loop, hooks
    and batch sizes are the model's; only the networks differ), then the final particles' decode and the
    orientation ELBO's UNet and encoder rows are added as the record counts them (evaluation/record.py)."""
    from pipeline.resolve import resolve
    from stages import ordered

    real = compose_config(study, [*c.overrides, *study.common])
    real_sampler = resolve(real).sampler
    if real_sampler.name == "resample":
        from sampler.resample import rows_at_most

        per = rows_at_most(real_sampler.resample.num_steps, real_sampler.resample)
        rows = {k: float(v * real.particle_num) for k, v in per.items()}
        return _with_evaluation(rows, real.particle_num, real)
    base, _, _, _ = _stand_in()
    cfg = copy.deepcopy(base)                      # the configuration's particles, stages and steps on the stand-in
    cfg.particle_num, cfg.seed = real.particle_num, real.seed
    for stage in ordered():
        for key in (stage.flag, *stage.more_flags, *([stage.name] if stage.block else [])):
            cfg[key] = copy.deepcopy(real[key])
    for block in ("annealing", "ode"):
        cfg.sampler[block].num_steps = real.sampler[block].num_steps
    cfg.sampler.mcmc.num_steps, cfg.sampler.mcmc.algo = real.sampler.mcmc.num_steps, real.sampler.mcmc.algo
    rows, final = stand_in_rows(cfg)
    return _with_evaluation(rows, final, real)


def stand_in_rows(cfg) -> tuple[dict[str, float], int]:
    """The network rows of one image of cfg on the stand-in, and its final particles. Unless a stage's rows depend
    on the sampled path (Stage.path_rows: the refine stage's optimiser stops on its own rule), every count is affine
    in the MCMC steps M (per annealing step: M rows per particle of the gradient and of each drift, the rest fixed
    by the step and the batch size the stages set), so loops of 1 and 2 MCMC steps give it exactly, in a fraction
    of a long preset's time (M = 50: 3 steps' work instead of 50)."""
    from pipeline.resolve import resolve

    M = cfg.sampler.mcmc.num_steps
    if M <= 2 or any(stage.path_rows for stage, _ in resolve(cfg).active):
        return _count_rows(cfg)
    (one, final), (two, _) = (_count_rows(_with_mcmc_steps(cfg, m)) for m in (1, 2))
    return {k: one.get(k, 0.0) + (M - 1) * (two.get(k, 0.0) - one.get(k, 0.0)) for k in {*one, *two}}, final


def _with_mcmc_steps(cfg, m: int):
    out = copy.deepcopy(cfg)
    out.sampler.mcmc.num_steps = m
    return out


def _count_rows(cfg) -> tuple[dict[str, float], int]:
    """The stand-in's sampler loop of cfg, counted."""
    import torch

    from pipeline.resolve import resolve
    from pipeline.sampling import sample_batch
    from tracking.compute import NetworkCounter

    _, model, operator, gt = _stand_in()
    with NetworkCounter(model) as counter:
        sampled = sample_batch(model, operator, gt.to(torch.float32), [0], resolve(cfg), torch.device("cpu"),
                               torch.float32, counter)
    return {k: float(v) for k, v in sampled.network_rows.items()}, sampled.state.z.shape[0]


def _with_evaluation(rows: dict, final: int, real) -> dict[str, float]:
    """The sampler's rows with the evaluation's added: the final particles decoded, the orientation ELBO."""
    from tracking.compute import KINDS

    rows["decoder_forward"] += final                               # the answer: the final particles decoded
    if real.model.name == "ldm":                                   # the ELBO: x and rot x at every level, encoded once
        rows["unet"] += 2 * final * real.orientation.elbo_evals
        rows["encoder"] += 2 * final
    return {k: rows.get(k, 0.0) for k in KINDS}


def tflop_per_image(study: Study, c: Configuration) -> float | None:
    from pipeline.run import cost_per_row

    per_row = cost_per_row(compose_config(study, [*c.overrides, *study.common]).model)
    if per_row is None:
        return None
    rows = network_rows(study, c)
    return sum(rows[k] * per_row[k] for k in rows)


def measured_rate(study: Study) -> float | None:
    """TFLOP/s the study's finished images sustained (all network calls over their time), None before any."""
    tflop = seconds = 0.0
    for recs in records(study).values():
        for im in recs:
            t = (im.get("compute_total") or {}).get("tflop")
            if t is not None and im.get("total_time_s"):
                tflop, seconds = tflop + t, seconds + im["total_time_s"]
    return tflop / seconds if seconds else None


def memory_per_image(study: Study) -> float:
    """Bytes one image's particles need, for the study's configuration with the most (the run's own estimate of
    memory per particle, tracking/memory.py)."""
    from tracking.memory import memory_per_particle

    cfg = compose_config(study, [*study.configurations[0].overrides, *study.common])
    particles = max(int(compose_config(study, [*c.overrides, *study.common]).particle_num)
                    for c in study.configurations)
    return particles * memory_per_particle(cfg.model)


def gpu_images_per_batch(study: Study, memory_bytes: float) -> int:
    """Images per batch that fit a GPU of that memory (80 % of the device), at most MAX_IMAGES_PER_BATCH."""
    return max(1, min(MAX_IMAGES_PER_BATCH, int(0.8 * memory_bytes // memory_per_image(study))))


@dataclass
class Plan:
    """What a study will run: per configuration its TFLOP per image and pending images; the rate and its source."""

    rows: list[dict]
    rate: float
    rate_source: str
    unit: str                       # GPU-hours or core-hours

    @property
    def hours(self) -> float:
        return sum(r["hours"] for r in self.rows)

    @property
    def pending_jobs(self) -> int:
        return sum(r["pending_jobs"] for r in self.rows)

    def text(self, study: Study, workers: int, who: str = "worker(s)") -> str:
        head = (f"plan: {study.model} ({' '.join(stack(study.model, study.sampler))}), images {study.start}-"
                f"{study.start + study.images - 1} x seeds {list(study.seeds)} = {study.images * len(study.seeds)} "
                f"measurements per configuration, shards of {study.shard} images, "
                f"{min(study.images_per_batch, study.shard, study.images)} image(s) per batch; results in {study.out}")
        if study.common:
            head += f"; every configuration, the reference included, runs with {' '.join(study.common)}"
        lines = [head, "", f"| configuration | TFLOP / image | jobs | done | images to run | {self.unit} |",
                 "|---|---|---|---|---|---|"]
        for r in self.rows:
            lines.append(f"| {r['label']} | {'at most ' if r.get('bound') else ''}{r['tflop']:.4g} | {r['jobs']} | {r['jobs'] - r['pending_jobs']} | "
                         f"{r['pending_images']} | {r['hours']:.2f} |")
        lines += ["", f"total: {sum(r['jobs'] for r in self.rows)} jobs, {self.pending_jobs} to run; "
                      f"{self.hours:.2f} {self.unit} at {self.rate:.3g} TFLOP/s ({self.rate_source}); about "
                      f"{self.hours / max(workers, 1):.2f} h of wall time on {workers} {who}"]
        return "\n".join(lines)


def plan(study: Study) -> Plan:
    """The study's plan: every configuration's TFLOP per image from the cost model (network_rows), the pending images
    of each, and hours at the rate the study has measured so far (else RATES)."""
    from pipeline.resolve import resolve

    check_study(study, machine=False, checkpoint=False)
    rate = measured_rate(study)
    source = "measured on this study's finished images"
    if rate is None:
        kind = "cuda" if study.gpu else "cpu"
        rate, source = RATES[kind], ("an H200 in TF32, measured on the full-size FFHQ LDM (docs/performance.md): "
                                     "other GPUs and precisions differ" if kind == "cuda" else
                                     "one core of the 2-core development machine (docs/performance.md)")
    rows = []
    jobs = study.jobs()
    for c in study.configurations:
        mine = [j for j in jobs if j.configuration == c]
        pending = {j: j.count - finished(study, j) for j in mine}
        tflop = tflop_per_image(study, c) or 0.0
        images = sum(max(v, 0) for v in pending.values())
        # ReSample's optimisations stop when they stop: its cost is bounded, not counted (sampler.resample.rows_at_most)
        bound = resolve(compose_config(study, [*c.overrides, *study.common])).sampler.name == "resample"
        rows.append({"label": c.label, "tflop": tflop, "bound": bound, "jobs": len(mine),
                     "pending_jobs": sum(v > 0 for v in pending.values()), "pending_images": images,
                     "hours": images * tflop / rate / 3600})
    return Plan(rows, rate, source, "GPU-hours" if study.gpu else "core-hours")


def assign(jobs: list[Job], cost: dict[Configuration, float], workers: int) -> list[list[Job]]:
    """Jobs split among workers, the longest first to the least loaded (deterministic, no worker talks to
    another): each worker's list is its own, so no two workers ever run the same shard."""
    loads = [[0.0, w, []] for w in range(max(1, min(workers, len(jobs))))]
    for job in sorted(jobs, key=lambda j: (-cost[j.configuration] * j.count, j.name)):
        least = min(loads, key=lambda load: (load[0], load[1]))
        least[0] += cost[job.configuration] * job.count
        least[2].append(job)
    return [load[2] for load in loads if load[2]]
