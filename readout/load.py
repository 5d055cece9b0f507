"""metric.json files read back: found under any folders, grouped into experiments (shards of one merged by
(seed, index), duplicates and gaps reported)."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from evaluation.summary import summarize
from tracking.metric_file import read_json

# keys that choose which images a run does or where it writes, never how it samples
# (seed: a run's measurements are (seed, image) pairs; several seeds of one setting are one experiment, its seeds
# clustered by image where statistics are computed)
SHARD_KEYS = ("data.start_index", "num_eval_images", "seed", "name", "save_dir", "resume", "overwrite", "save_images")


class InputError(ValueError):
    """Nothing to read, or an unreadable metric.json: reported in one line, exit status 2."""


def find_metric_files(paths) -> list[Path]:
    files = []
    for p in map(Path, paths):
        if p.is_file():
            files.append(p)
        elif (p / "metric.json").is_file():
            files.append(p / "metric.json")
        elif p.is_dir():
            found = sorted(p.rglob("metric.json"))
            if not found:
                raise InputError(f"no metric.json under {p}")
            files += found
        else:
            raise InputError(f"{p} does not exist")
    return list(dict.fromkeys(f.resolve() for f in files))  # a run named twice is read once


def load_run(path: Path) -> dict:
    try:
        metric = read_json(path)
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"cannot read {path}: {e}") from None
    if not isinstance(metric, dict) or not isinstance(metric.get("images"), list):
        raise InputError(f"{path} is not a run's metric.json (no 'images' list)")
    run_dir = path.parent
    return {"dir": run_dir, "label": f"{run_dir.parent.name}/{run_dir.name}", "metric": metric}


def _drop(config: dict, dotted: str) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        config = config.get(key)
        if not isinstance(config, dict):
            return
    config.pop(last, None)


def experiment_key(config: dict, ignore=(), folder: str = "") -> str:
    """Equal for shards of one experiment: same experiment folder, same config but for the shard keys."""
    config = json.loads(json.dumps(config))
    for key in (*SHARD_KEYS, *ignore):
        _drop(config, key)
    return json.dumps([folder, config], sort_keys=True)


def group_runs(runs: list[dict], mode: str = "config", ignore=()) -> list[list[dict]]:
    """Runs of one experiment together, in the order the first of each was given."""
    if mode == "none":
        return [[r] for r in runs]
    groups: dict[str, list[dict]] = {}
    for r in runs:
        key = experiment_key(r["metric"].get("config", {}), ignore, r["dir"].parent.name)
        groups.setdefault(key, []).append(r)
    return list(groups.values())


def _ranges(indices) -> str:
    """[0, 1, 2, 5] -> '0-2, 5'."""
    out, run = [], []
    for i in sorted(indices):
        if run and i != run[-1] + 1:
            out.append(run)
            run = []
        run.append(i)
    if run:
        out.append(run)
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in out)


def _expected_indices(config: dict) -> set[int]:
    start = (config.get("data") or {}).get("start_index")
    count = config.get("num_eval_images")
    return set(range(start, start + count)) if isinstance(start, int) and isinstance(count, int) else set()


def merge_images(group: list[dict], label: str, warn=None) -> tuple[list[dict], dict[tuple, Path]]:
    """The group's per-image records (each with its run's `seed`) merged by (seed, image index), first occurrence
    kept, and each measurement's run dir."""
    warn = warn or (lambda msg: print(f"warning: {msg}", file=sys.stderr))
    by_key, source = {}, {}
    expected: dict = {}
    for r in group:
        seed = r["metric"].get("config", {}).get("seed")
        expected.setdefault(seed, set()).update(_expected_indices(r["metric"].get("config", {})))
        for im in r["metric"]["images"]:
            key = (seed, im["index"])
            if key in by_key:
                seen = f"image {key[1]}" + ("" if len(expected) == 1 else f" of seed {seed}")
                warn(f"{label}: {seen} appears in {source[key]} and {r['dir']}; keeping the first")
                continue
            by_key[key], source[key] = {**im, "seed": seed}, r["dir"]
    for seed, want in expected.items():
        have = {i for s, i in by_key if s == seed}
        if have or want:
            span = set(range(min(have | want), max(have | want) + 1))
            missing = (want | span) - have
            if missing:
                of = "" if len(expected) == 1 else f" of seed {seed}"
                warn(f"{label}: missing image(s) {_ranges(missing)}{of} (an unfinished run? finish it with "
                     f"resume=true, or run the shard that covers them)")
    keys = sorted(by_key, key=lambda k: (k[1], -1 if k[0] is None else k[0]))
    return [by_key[k] for k in keys], {k: source[k] for k in keys}


def group_label(group: list[dict]) -> str:
    """A run's parent/name; for several shards, their common prefix cut at a '_' (e.g. '…_n10_s0' -> '…_n10')."""
    labels = [r["label"] for r in group]
    if len(labels) == 1:
        return labels[0]
    prefix = os.path.commonprefix(labels)
    if not all(len(lab) == len(prefix) for lab in labels):
        cut = max(prefix.rfind("_"), prefix.rfind("/"))
        prefix = prefix[:cut] if cut > prefix.rfind("/") else prefix.rstrip("_/")
    return prefix or labels[0]


def load_experiments(paths, mode="config", ignore=(), warn=None) -> list[dict]:
    runs = [load_run(f) for f in find_metric_files(paths)]
    experiments, seen = [], {}
    for group in group_runs(runs, mode, ignore):
        label = group_label(group)
        seen[label] = seen.get(label, 0) + 1
        if seen[label] > 1:  # two experiments that would print alike
            label = f"{label} #{seen[label]}"
        images, sources = merge_images(group, label, warn)
        experiments.append({"label": label, "runs": group, "images": images, "sources": sources,
                            "summary": summarize(images)})
    return experiments


# ---------------------------------------------------------------- the table
