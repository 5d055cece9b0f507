"""Launching a study's pending jobs through submitit: on SLURM as one job array named after the study (one GPU per
task on a GPU study, memory and CPUs sized from the plan, each task handed its own list of shards, so a shared
filesystem needs no lock; shards a live task holds are never submitted again), or on this machine as one worker per
visible GPU or per CPU core. A task that hits its time limit or is preempted is requeued and continues its shards;
a task that failed is named, with its log, by failed_tasks (the study's report prints them)."""
from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import submitit

from core.errors import ConfigError
from pipeline.study import ROOT, Study, assign, records, work

# every task starts where the tool is, whatever folder the study was submitted from
SETUP = [f"export PYTHONPATH={ROOT}${{PYTHONPATH:+:$PYTHONPATH}}", "export OMP_NUM_THREADS=1", f"cd {Path(ROOT)}"]

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


# sbatch's long options this tool passes on (as sbatch spells them; submitit's own names too), and how each is read
TEXT = ("partition", "account", "qos", "constraint", "exclude", "nodelist", "comment", "mail-type", "mail-user",
        "gres", "job-name")
COUNTS = ("cpus-per-task", "gpus-per-node")
SUBMITIT_NAMES = {"timeout_min": "time", "mem_gb": "mem", "cpus_per_task": "cpus-per-task",
                  "gpus_per_node": "gpus-per-node", "job_name": "job-name", "mail_type": "mail-type",
                  "mail_user": "mail-user"}


def minutes(text: str) -> int:
    """sbatch's --time: minutes, MM:SS, HH:MM:SS, D-HH[:MM[:SS]] -> whole minutes (at least 1)."""
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text)
    if not m:
        raise ValueError(text)
    d, a, b, c = (int(x) if x else None for x in m.groups())
    if d is None and b is None:                          # plain minutes
        total = a
    elif d is None and c is None:                        # MM:SS
        total = a + b / 60
    elif d is None:                                      # HH:MM:SS
        total = 60 * a + b + c / 60
    else:                                                # D-HH[:MM[:SS]]
        total = 1440 * d + 60 * a + (b or 0) + (c or 0) / 60
    return max(1, round(total))


def memory(text: str, gigabytes: bool = False) -> str:
    """sbatch's --mem (a number with K, M, G or T; megabytes without) as sbatch reads it; mem_gb's gigabytes."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]?)B?", text.strip(), re.I)
    if not m:
        raise ValueError(text)
    value, unit = float(m.group(1)), (m.group(2) or ("G" if gigabytes else "M")).upper()
    mb = value * {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 ** 2}[unit]
    return f"{max(1, round(mb))}M"


def slurm_parameters(pairs: list[str]) -> dict:
    """KEY=VALUE strings, sbatch's long options as sbatch spells them (partition=gpu, account=abc, time=10:00:00,
    mem=16G, cpus-per-task=8, gres=gpu:1; or submitit's timeout_min, mem_gb, cpus_per_task), as submitit's
    slurm_* parameters; a key or value sbatch would not take is a ConfigError in one line."""
    accepted = ", ".join([*TEXT, "time", "mem", *COUNTS])
    out = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        key = SUBMITIT_NAMES.get(key.strip().lstrip("-"), key.strip().lstrip("-")).replace("_", "-")
        if not eq or not value.strip():
            raise ConfigError(f"--slurm {pair}: give KEY=VALUE, e.g. partition=gpu")
        if key not in (*TEXT, "time", "mem", *COUNTS):
            raise ConfigError(f"--slurm {pair}: {key} is not an option this tool passes to sbatch; it takes {accepted}")
        try:
            if key == "time":
                out["slurm_time"] = minutes(value)
            elif key == "mem":
                out["slurm_mem"] = memory(value, gigabytes=pair.startswith("mem_gb"))
            elif key in COUNTS:
                if not value.isdigit():
                    raise ValueError(value)
                out[f"slurm_{key.replace('-', '_')}"] = int(value)
            else:
                out[f"slurm_{key.replace('-', '_')}"] = value
        except ValueError:
            raise ConfigError(f"--slurm {pair}: {value!r} is not a valid {key} (sbatch's spelling, e.g. "
                              f"{'time=10:00:00' if key == 'time' else 'mem=16G' if key == 'mem' else key + '=4'})") \
                from None
    return out


def task_resources(study: Study) -> dict:
    """What one array task asks for, sized from the plan: the GPU study's one GPU and 8 CPUs, a CPU study's one CPU
    (its workers are the parallelism, one thread each); memory for its largest batch (pipeline/study.memory_per_image,
    1.5 x) plus 2 GiB for the process, in MB."""
    from pipeline.study import memory_per_image

    mb = 1.5 * min(study.images_per_batch, study.shard) * memory_per_image(study) / 2 ** 20 + 2048
    return {"slurm_cpus_per_task": 8 if study.gpu else 1, "slurm_gpus_per_node": 1 if study.gpu else 0,
            "slurm_mem": f"{round(mb)}M"}


def queued_file(study: Study) -> Path:
    return study.out / "submitit" / "queued.json"


def live_tasks() -> set[str] | None:
    """The array tasks SLURM holds now, queued or running ("job_task"); None where squeue cannot be asked."""
    if shutil.which("squeue") is None:
        return None
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-o", "%i"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return set(out.stdout.split()) if out.returncode == 0 else None


def held_shards(study: Study) -> dict[str, str]:
    """Shard (job name) -> the live array task that holds it, from the study's record of its submissions."""
    path = queued_file(study)
    if not path.exists():
        return {}
    live = live_tasks() or set()
    held = {}
    for array, tasks in json.loads(path.read_text()).items():
        for index, names in enumerate(tasks):
            if f"{array}_{index}" in live:
                held.update({name: f"{array}_{index}" for name in names})
    return held


def failed_tasks(study: Study) -> list[str]:
    """One line per array task or local worker of the study that failed: its id, the error's last line and its
    log (submitit keeps each task's result and logs under the study's submitit/ folder)."""
    folder = study.out / "submitit"
    lines = []
    for result in sorted(folder.glob("*/*_result.pkl")) if folder.exists() else []:
        try:
            with open(result, "rb") as f:
                outcome, value = pickle.load(f)
        except Exception:                                # a half-written pickle: the task is still ending
            continue
        if outcome == "error":
            last = [ln for ln in str(value).strip().splitlines() if ln.strip()][-1:] or ["(no message)"]
            task = result.name[: -len("_result.pkl")]
            log = result.with_name(f"{task}_log.err")
            lines.append(f"task {task} failed: {last[0].strip()} (log: {log})")
    return lines


def launch(study: Study, launcher: str, workers: int, cost: dict, slurm: list[str] = (), wait: bool = True,
           name: str = "study") -> list:
    """Split the study's pending jobs among `workers` and submit them; local workers are waited for (wait=True),
    SLURM's are not (their ids are printed). On SLURM a shard that a live task of an earlier submission holds is
    not submitted again; name: the study's, the array's name."""
    from pipeline.study import finished

    pending = [j for j in study.jobs() if finished(study, j) < j.count]
    folder = study.out / "submitit"
    submitted = []
    if launcher == "slurm":
        options = slurm_parameters(list(slurm))           # checked before anything is asked of SLURM
        held = held_shards(study)
        free = [j for j in pending if j.name not in held]
        if not free:
            tasks = sorted(set(held.values()))
            print(f"[study] every pending shard is held by a live task of an earlier submission ({', '.join(tasks)}):"
                  f" nothing submitted", file=sys.stderr, flush=True)
            return []
        groups = assign(free, cost, workers)
        ex = submitit.AutoExecutor(folder=folder / "%j", cluster="slurm")
        ex.update_parameters(**{"tasks_per_node": 1, "nodes": 1, "slurm_time": 240,
                                "slurm_job_name": f"frontier-{name}", "slurm_array_parallelism": len(groups),
                                "slurm_setup": SETUP, "slurm_additional_parameters": {"requeue": True},
                                **task_resources(study), **options})
        try:
            submitted = ex.map_array(Worker(study), groups)
        except (submitit.core.utils.FailedJobError, subprocess.CalledProcessError, OSError) as e:
            message = " ".join(str(e).split())
            raise ConfigError(f"sbatch refused the array: {message[-400:]}") from None
        record = json.loads(queued_file(study).read_text()) if queued_file(study).exists() else {}
        record[submitted[0].job_id.split("_")[0]] = [[j.name for j in g] for g in groups]
        queued_file(study).write_text(json.dumps(record))
        skipped = f"; {len(pending) - len(free)} shard(s) left to live tasks of an earlier submission" if held else ""
        print(f"[study] submitted {len(groups)} array task(s) as frontier-{name}: "
              f"{', '.join(j.job_id for j in submitted)}; logs in {folder}{skipped}; `report` reads whatever has "
              f"finished and names any task that failed", file=sys.stderr, flush=True)
        return submitted
    groups = assign(pending, cost, workers)
    gpus = visible_gpus() if study.gpu else []       # more workers than GPUs share them, in turn
    for w, group in enumerate(groups):
        ex = submitit.LocalExecutor(folder=folder / "%j")
        ex.update_parameters(timeout_min=LOCAL_TIMEOUT_MIN, gpus_per_node=1 if study.gpu else 0,
                             visible_gpus=(gpus[w % len(gpus)],) if study.gpu else (), setup=SETUP)
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


def sweep(study: Study, workers: int | None = None) -> tuple[dict, dict, dict]:
    """A sweep's run and its reading, for the preset sweeps: run_here, then each configuration's records, its
    comparison with the first configuration (analysis.paired.compare) and its final particles that found the image."""
    from analysis.paired import compare

    run_here(study, workers)
    recs = records(study)
    first = study.configurations[0].label
    comparisons = {c.label: compare(recs[c.label], recs[first]) for c in study.configurations}
    found = {label: sum(p["mode"] != "fail" for im in r for p in im["particles"] if p.get("pruned_at") is None)
             for label, r in recs.items()}
    return recs, comparisons, found
