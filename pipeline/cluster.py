"""Launching a study's pending jobs through submitit: on SLURM as one job array (one GPU per task, each task handed
its own list of shards, so a shared filesystem needs no lock), or on this machine as one worker per visible GPU or
per CPU core. A task that hits its time limit or is preempted is requeued and continues its shards."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import submitit

from pipeline.study import ROOT, Study, assign, work

LOCAL_TIMEOUT_MIN = 7 * 24 * 60          # a local worker runs until its shards are done


class Worker(submitit.helpers.Checkpointable):
    """One array task or local worker: runs its own list of jobs (pipeline/study.work). On a time limit or
    preemption submitit calls checkpoint(), which resubmits the same call: finished shards are skipped, the started
    one continues from its metric.json."""

    def __init__(self, study: Study):
        self.study = study

    def __call__(self, jobs) -> int:
        work(self.study, jobs)
        return len(jobs)


def workers_here(gpu: bool) -> int:
    """One worker per visible GPU, or per CPU core this process may use."""
    if gpu:
        import torch
        return torch.cuda.device_count()
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def visible_gpus() -> list[int]:
    """The GPU ids this process may use (CUDA_VISIBLE_DEVICES where it lists ids), one local worker each."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    if listed and all(p.strip().isdigit() for p in listed.split(",")):
        return [int(p) for p in listed.split(",")]
    return list(range(workers_here(True)))


def slurm_parameters(pairs: list[str]) -> dict:
    """KEY=VALUE strings (sbatch's options: partition=gpu, account=..., timeout_min=600) as submitit's."""
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        out[key if key in ("timeout_min", "mem_gb", "cpus_per_task", "gpus_per_node") else f"slurm_{key}"] = \
            int(value) if value.isdigit() else value
    return out


def launch(study: Study, launcher: str, workers: int, cost: dict, slurm: list[str] = (), wait: bool = True) -> list:
    """Split the study's pending jobs among `workers` and submit them; local workers are waited for (wait=True),
    SLURM's are not (their ids are printed)."""
    from pipeline.study import finished

    pending = [j for j in study.jobs() if finished(study, j) < j.count]
    groups = assign(pending, cost, workers)
    folder = study.out / "submitit"
    submitted = []
    if launcher == "slurm":
        ex = submitit.AutoExecutor(folder=folder / "%j", cluster="slurm")
        ex.update_parameters(**{"gpus_per_node": 1 if study.gpu else 0, "tasks_per_node": 1, "nodes": 1,
                                "timeout_min": 240, "slurm_array_parallelism": len(groups),
                                "slurm_additional_parameters": {"requeue": True}, **slurm_parameters(list(slurm))})
        submitted = ex.map_array(Worker(study), groups)
        print(f"[study] submitted {len(groups)} array task(s): {', '.join(j.job_id for j in submitted)}; logs in "
              f"{folder}; `report` reads whatever has finished", file=sys.stderr, flush=True)
        return submitted
    gpus = visible_gpus() if study.gpu else []       # more workers than GPUs share them, in turn
    for w, group in enumerate(groups):
        ex = submitit.LocalExecutor(folder=folder / "%j")
        ex.update_parameters(timeout_min=LOCAL_TIMEOUT_MIN, gpus_per_node=1 if study.gpu else 0,
                             visible_gpus=(gpus[w % len(gpus)],) if study.gpu else (),
                             setup=[f"export PYTHONPATH={ROOT}${{PYTHONPATH:+:$PYTHONPATH}}",
                                    "export OMP_NUM_THREADS=1", f"cd {Path(ROOT)}"])
        submitted.append(ex.submit(Worker(study), group))
    print(f"[study] {len(groups)} local worker(s) started (logs in {folder})", file=sys.stderr, flush=True)
    if wait:
        failed = []
        for job in submitted:              # every worker to its end: one that fails leaves the others running
            try:
                job.result()
            except Exception as e:         # submitit's FailedJobError and its kin carry the worker's log path
                failed.append(job)
                print(f"[study] worker {job.job_id} failed ({type(e).__name__}); its log: {job.paths.stderr}",
                      file=sys.stderr, flush=True)
        if failed:
            raise SystemExit(f"error: {len(failed)} of {len(submitted)} worker(s) failed (logs above); the shards "
                             f"they finished are kept, and the same command continues the rest")
    return submitted


def run_here(study: Study, workers: int | None = None) -> None:
    """Run a study's pending jobs on this machine's cores or GPUs and wait (the sweeps' way: every job costs about
    the same)."""
    launch(study, "local", workers or workers_here(study.gpu), {c: 1.0 for c in study.configurations})
