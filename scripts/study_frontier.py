"""The frontier study: do interacting particles find the right image more often, or as often for less compute, than
four independent runs? Every configuration runs on the same measurements (images x seeds, the same y: a paired
design), as jobs of (configuration, seed, image shard) on this machine's cores or GPUs, or on a SLURM cluster; the
endpoints, named before measuring, are compared with their reference by intervals and exact tests clustered by image
(analysis/paired.py). docs/particle_search.md has the results and how to run it on a cluster.

    python scripts/study_frontier.py --model naturalldm plan              # jobs, measurements, hours; runs nothing
    python scripts/study_frontier.py --model naturalldm run               # one worker per core, waits for them
    python scripts/study_frontier.py --model ffhq256ldm --sampler hmc run --launcher slurm --slurm partition=gpu
    python scripts/study_frontier.py --model naturalldm report --plot docs/naturalldm_frontier.png
    python scripts/study_frontier.py --model ffhq256ldm plan --halfwidth 3 --pilot docs/frontier/naturalldm.json
    python scripts/study_frontier.py plan --model digits32ldm --configs-file mine.yaml   # your own configurations

A finished shard is never redone and an interrupted study continues where it stopped (each job is an ordinary run
folder under --out, default results/frontier/<model>); `report` reads whatever has finished.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.errors import ConfigError, ToolError
from pipeline.stacks import FULL_SIZE, SAMPLERS, STACKS
from pipeline.study import Configuration, Study, check_study, compose_config, plan, records

ROOT = Path(__file__).resolve().parents[1]

REFERENCE = "4 independent"
RESAMPLE_LABEL = "ReSample, 4 runs"
# the resampling window where the loss tells failing particles apart on decoded truths (scripts/studies/loss_predicts_failure.py
# on held-out tuning images, docs/resampling.md): natural, within-image AUC 0.6 or below above t = 600 and 0.67 to 0.93
# from t = 560 down; digits, 0.2 to 0.73 above t = 240 and 0.8 to 0.93 from t = 200 down
RESAMPLING = {"naturalldm": ("resampling_interval=2", "resampling.start_t=500", "resampling.end_t=200",
                             "resampling.temperature=0.2"),
              "digits32ldm": ("resampling_interval=2", "resampling.start_t=200", "resampling.end_t=60",
                              "resampling.temperature=0.2")}
# images and seeds of each model's study: every natural test crop (64, of two photographs) x 4 seeds; 100 test
# digits x 2; DAPS's 100-image test sets x 4 seeds for the full-size models; the benchmarks' 20 images x 2
DESIGN = {"naturalldm": (64, (0, 1, 2, 3)), "digits32ldm": (100, (0, 1)), "ffhq256ldm": (100, (0, 1, 2, 3)),
          "imagenet256ldm": (100, (0, 1, 2, 3)), "two_mode": (20, (0, 1)), "two_mode_latent": (20, (0, 1))}
# the equivalence margins (the endpoint's units: a share for the binary ones, dB for the PSNR): a difference whose
# whole 95 % interval lies within +-margin reads "equivalent". Declared 2026-12-06 (issue 43), after the power study
# of 2026-12-04/05 had been run: for that study an "equivalent" is judged against a margin set after measuring.
# ReSample's preset for each model it runs on (an LDM trained on a DDPM schedule; not the two-mode benchmarks)
RESAMPLE = {"naturalldm": "sampler=naturalldm_resample", "digits32ldm": "sampler=digits32ldm_resample",
            "ffhq256ldm": "sampler=resample", "imagenet256ldm": "sampler=resample"}
MARGINS = {"found": 0.03, "in_class": 0.03, "chosen_right": 0.03, "best_psnr": 0.5}
MAX_HOURS = 10.0            # a launch above this many device-hours needs --yes


def configurations(model: str, which: str) -> list[Configuration]:
    """The study's configurations: `power` the six whose differences the study is sized for (issue 36), `all` adds
    the rest of the frontier (other particle counts, longer chains, other schedules, branching, resampling)."""
    power = [
        Configuration(REFERENCE, "independent", ("particle_num=4",)),
        Configuration("2 independent", "independent", ("particle_num=2",)),
        Configuration("4 -> 2 pruned at t=200", "pruning", ("particle_num=4", "pruning_step=200", "pruning_keep=2")),
        Configuration("4 repulsive 0.3 (score-relative)", "repulsion", ("particle_num=4", "repulsion_scale=0.3")),
        # Particle Guidance at the strength that pushes about as hard as score-relative 0.3 on the mini LDMs
        # (repulsion / score ratio 0.1 to 0.4 in the first steps; docs/particle_search.md)
        Configuration("4 Particle Guidance 3e5", "particle guidance",
                      ("particle_num=4", "repulsion_scale=3e5", "repulsion.mode=particle_guidance",
                       "repulsion.sigma_min=1.0")),
        Configuration("8 -> 4 -> 2 -> 1 halving at t=600,400,200", "successive halving",
                      ("particle_num=8", "pruning_step=[600,400,200]", "pruning_keep=[4,2,1]")),
        # the published baseline the design notes compare with: four ReSample runs (sampler/resample.py)
        *([Configuration(RESAMPLE_LABEL, "ReSample", (RESAMPLE[model], "particle_num=4"))] if model in RESAMPLE
          else []),
    ]
    if which == "power":
        return power
    mcmc = compose_config(Study(model, (), (), 0, 1, 1, Path("."), None), []).sampler.mcmc.num_steps
    return power + [
        Configuration("1 independent", "independent", ("particle_num=1",)),
        Configuration("8 independent", "independent", ("particle_num=8",)),
        Configuration("2 x 2 MCMC steps", "longer runs", ("particle_num=2", f"sampler.mcmc.num_steps={2 * mcmc}")),
        Configuration("1 x 4 MCMC steps", "longer runs", ("particle_num=1", f"sampler.mcmc.num_steps={4 * mcmc}")),
        Configuration("4 -> 1 pruned at t=400", "pruning", ("particle_num=4", "pruning_step=400", "pruning_keep=1")),
        Configuration("8 -> 2 pruned at t=400", "pruning", ("particle_num=8", "pruning_step=400", "pruning_keep=2")),
        Configuration("6 -> 3 -> 1 halving at t=400,200", "successive halving",
                      ("particle_num=6", "pruning_step=[400,200]", "pruning_keep=[3,1]")),
        Configuration("4 -> 2 -> 1 halving at t=600,400", "successive halving",
                      ("particle_num=4", "pruning_step=[600,400]", "pruning_keep=[2,1]")),
        Configuration("4 -> 2 -> 4 branched at t=200", "branching",
                      ("particle_num=4", "pruning_step=200", "pruning_keep=2", "pruning.mode=branch")),
        *([Configuration("4 resampling", "resampling", ("particle_num=4", *RESAMPLING[model]))]
          if model in RESAMPLING else []),
    ]


# the comparisons named before measuring: (row, configuration, its reference); the seeds' experiments first
COMPARISONS = [
    ("Exp 1: repulsion against independence", "4 repulsive 0.3 (score-relative)", REFERENCE),
    ("Exp 1: Particle Guidance against independence", "4 Particle Guidance 3e5", REFERENCE),
    ("Exp 2: 4 -> 2 at t = 200 against 4", "4 -> 2 pruned at t=200", REFERENCE),
    ("Exp 3: 4 -> 2 at t = 200 against 2 from the start", "4 -> 2 pruned at t=200", "2 independent"),
    ("successive halving against 4", "8 -> 4 -> 2 -> 1 halving at t=600,400,200", REFERENCE),
    ("2 independent against 4", "2 independent", REFERENCE),
    # a question of its own (another sampler, not a particle method), so its own Holm family: adding it leaves the
    # particle methods' adjusted p-values as the power study reported them
    ("ReSample (4 runs) against 4 independent LatentDAPS runs", RESAMPLE_LABEL, REFERENCE, "baseline"),
]


VERBS = ("plan", "run", "report", "archive", "restore")


def own_configurations(path: Path | None) -> list[Configuration]:
    """--configs-file: YAML, a list of {label, overrides: [key=value, ...], family (optional)}: configurations a
    researcher adds to the study, each compared with the study's reference by the same statistics."""
    if path is None:
        return []
    import yaml

    try:
        entries = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"--configs-file {path} cannot be read as YAML ({str(e).splitlines()[0]})") from None
    shape = "a list of {label: ..., overrides: [key=value, ...]}"
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"--configs-file {path} must hold {shape}")
    out = []
    for i, e in enumerate(entries):
        if not (isinstance(e, dict) and isinstance(e.get("label"), str) and isinstance(e.get("overrides"), list)
                and all(isinstance(o, str) and "=" in o for o in e["overrides"])):
            raise ConfigError(f"--configs-file {path}: entry {i + 1} is not {shape}")
        out.append(Configuration(e["label"], str(e.get("family", "yours")), tuple(e["overrides"])))
    return out


def named_comparisons(study: Study) -> list[tuple]:
    """The comparisons named before measuring, then each of the researcher's configurations against the reference."""
    mine = {c.label for c in study.configurations} - {c.label for c in configurations(study.model, "all")}
    return [*COMPARISONS, *[(f"yours: {label} against {REFERENCE}", label, REFERENCE) for label in sorted(mine)]]


def study_name(args) -> str:
    """The study's name: its default folder under results/frontier/ and its archive's under docs/frontier/."""
    return args.model + (f"_{args.sampler}" if args.sampler else "")


def build_study(args) -> Study:
    images, seeds = DESIGN[args.model]
    configs = configurations(args.model, args.configs)
    for c in own_configurations(args.configs_file):
        if any(c.label == o.label or c.slug == o.slug for o in configs):
            raise ConfigError(f"--configs-file: {c.label!r} is the label of a configuration of the study already; "
                              f"name yours apart")
        configs.append(c)
    def key(override: str) -> str:
        return override.split("=", 1)[0].lstrip("+~")

    for c in configs:                   # overrides for every configuration: none may contradict one's own settings
        mine = {key(o): o for o in c.overrides}
        clash = [o for o in args.overrides if key(o) in mine and o not in c.overrides]
        if clash:
            raise ConfigError(f"{clash[0]} would change the configuration {c.label!r}, whose label names its own "
                              f"{mine[key(clash[0])]}: add yours as a configuration of its own with --configs-file")
    if args.only:
        unknown = [o for o in args.only if not any(o in (c.label, c.slug) for c in configs)]
        if unknown:
            raise ConfigError(f"--only {unknown[0]!r} is no configuration of this study; its labels (or slugs): "
                              + "; ".join(f"{c.label} ({c.slug})" for c in configs))
        configs = [c for c in configs if c.label in args.only or c.slug in args.only]
    if args.sampler is not None and args.model not in FULL_SIZE:
        raise ConfigError(f"--sampler is for the full-size models ({', '.join(FULL_SIZE)}); {args.model} has its own")
    out = args.out or ROOT / "results" / "frontier" / study_name(args)
    study = Study(args.model, tuple(configs), tuple(args.seeds or seeds), args.start, args.images or images,
                  args.shard or (10 if args.model in FULL_SIZE else 16), Path(out), args.sampler,
                  args.images_per_batch or 4, tuple(args.overrides), args.device)
    if study.gpu and args.images_per_batch is None:
        from pipeline.study import gpu_images_per_batch
        study = Study(**{**study.__dict__, "images_per_batch": gpu_images_per_batch(study, gpu_memory(args))})
    return study


def gpu_memory(args) -> float:
    """Bytes of the GPUs the jobs will run on: --gpu-memory-gb, else this machine's first GPU, else 80 GiB (an H100's
    or A100's; a SLURM study is planned on a login node)."""
    if args.gpu_memory_gb is not None:
        return args.gpu_memory_gb * 2**30
    import torch

    return torch.cuda.get_device_properties(0).total_memory if torch.cuda.is_available() else 80 * 2**30


def cost_of(study: Study, p) -> dict:
    """Each configuration's TFLOP per image (its weight when the jobs are split among workers)."""
    by_label = {r["label"]: r["tflop"] or 1.0 for r in p.rows}
    return {c: by_label[c.label] for c in study.configurations}


def halfwidth_plan(args, study: Study, p) -> list[str]:
    """plan --halfwidth: the images each named comparison needs, from the pilot's outcomes (--pilot, else the model's
    committed report), costed with this study's plan (device-hours per measurement of each configuration)."""
    from analysis.power import plan_lines

    if args.halfwidth <= 0:
        raise ConfigError(f"--halfwidth must be a positive number of points, not {args.halfwidth:g}")
    source = args.pilot or ROOT / "docs" / "frontier" / f"{study_name(args)}.json"
    if source.is_dir():
        source = source / "frontier.json"
    if not source.is_file():
        raise ConfigError(f"no report at {source} to plan from: pass --pilot with a finished study's frontier.json "
                          f"(python scripts/study_frontier.py --model M report writes it)")
    try:
        pilot = json.loads(source.read_text())["outcomes"]
    except (ValueError, KeyError):
        raise ConfigError(f"{source} is no study report (it has no `outcomes`)") from None
    cost = {r["label"]: r["tflop"] / p.rate / 3600 for r in p.rows}
    from pipeline.study import data_set_size

    try:
        available = data_set_size(study)
    except (ToolError, OSError):                      # e.g. FFHQ on a login node: no count to hold it against
        available = None
    return plan_lines(pilot, named_comparisons(study), args.halfwidth, cost, p.unit, str(source), available)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()),
                                 usage="%(prog)s {plan,run,report,archive,restore} [options] [overrides ...] (in any "
                                       "order)")
    ap.add_argument("--what", choices=VERBS, help=argparse.SUPPRESS)
    ap.add_argument("--configs-file", type=Path, default=None,
                    help="YAML: a list of {label, overrides: [key=value, ...]}, configurations of your own, each "
                         "compared with the reference")
    ap.add_argument("--model", default="naturalldm", choices=sorted(STACKS))
    ap.add_argument("--sampler", choices=SAMPLERS, default=None, help="full-size models: langevin (default) or hmc")
    ap.add_argument("--configs", choices=("power", "all"), default="power")
    ap.add_argument("--only", nargs="+", default=None, help="configuration labels or slugs")
    ap.add_argument("--seeds", type=int, nargs="+", default=None)
    ap.add_argument("--start", type=int, default=0, help="first image of the data set")
    ap.add_argument("--images", type=int, default=None, help="images per seed (default: the model's study design)")
    ap.add_argument("--shard", type=int, default=None, help="images per job")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--launcher", choices=("local", "slurm"), default="local")
    ap.add_argument("--workers", type=int, default=None, help="local: default one per GPU or core; slurm: array "
                                                               "tasks (default one per job)")
    ap.add_argument("--slurm", nargs="*", default=[], metavar="KEY=VALUE",
                    help="sbatch's long options as sbatch spells them: partition, account, qos, constraint, exclude, "
                         "nodelist, gres, time (10:00:00), mem (16G), cpus-per-task, gpus-per-node; memory and CPUs "
                         "are otherwise sized from the plan")
    ap.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda for the full-size "
                                                                             "models, cpu for the others")
    ap.add_argument("--images-per-batch", type=int, default=None, help="default: 4, or what the GPUs' memory holds")
    ap.add_argument("--gpu-memory-gb", type=float, default=None, help="the GPUs' memory, for images_per_batch "
                                                                      "(default: this machine's GPU, else 80)")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides for every configuration (another folder: --out)")
    ap.add_argument("--yes", action="store_true", help=f"launch even above {MAX_HOURS:g} device-hours")
    ap.add_argument("--halfwidth", type=float, default=None, metavar="POINTS",
                    help="plan: the images (and seeds) each named comparison needs for this half-width of its 95 %% "
                         "interval, and their cost, from the model's committed report or --pilot")
    ap.add_argument("--pilot", type=Path, default=None, help="plan --halfwidth: a finished study's report "
                                                             "(frontier.json, or the study folder holding it)")
    ap.add_argument("--plot", default=None, help="report: the plot's path")
    ap.add_argument("--save", default=None, help="report: the JSON's path (default: frontier.json in --out)")
    ap.add_argument("--archive-file", type=Path, default=None,
                    help="archive/restore: default docs/frontier/<model>_shards.json.gz")
    return ap


def parse(argv=None):
    """The verb may stand anywhere among the options (`--seeds 0 plan` and `plan --seeds 0` alike)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verbs = [a for a in argv if a in VERBS]
    if not verbs and {"-h", "--help"} & set(argv):
        parser().parse_intermixed_args(["--help"])             # the usage page, exit 0
    if not verbs:
        raise ConfigError(f"say what to do: one of {', '.join(VERBS)} (e.g. `--model naturalldm plan`)")
    argv.remove(verbs[0])
    args = parser().parse_intermixed_args(argv)
    args.what = verbs[0]
    return args


def main(argv=None) -> None:
    try:
        args = parse(argv)
    except ToolError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        study = build_study(args)
        if args.what in ("archive", "restore"):
            from pipeline.study import archive, restore

            # named by the study, not by --out: a study restored into another folder finds its archive
            path = args.archive_file or ROOT / "docs" / "frontier" / f"{study_name(args)}_shards.json.gz"
            if args.what == "restore" and not Path(path).is_file():
                raise ConfigError(f"no archive at {path}: pass --archive-file FILE (one that `archive` wrote)")
            if args.what == "archive":
                print(f"archived {archive(study, path)} finished shard(s) in {path}")
            else:
                print(f"restored {restore(study, path)} shard(s) from {path} into {study.out}")
            return
        if args.what == "report":
            from analysis.study_report import report
            import operators
            task = compose_config(study, []).task.operator
            from pipeline.cluster import failed_tasks
            report(study, records(study), named_comparisons(study), REFERENCE, float(task.sigma),
                   operators.OPERATORS[task.name].fit_factor, MARGINS, args.plot, args.save)
            failed = failed_tasks(study)
            if failed:
                print("\nTasks that failed (their shards are not in the tables; `run` again continues them):\n"
                      + "\n".join(failed))
            return
        from pipeline.cluster import launch, slurm_parameters, workers_here

        slurm_parameters(args.slurm)                   # a bad --slurm option is one line before anything is planned
        p = plan(study)
        slurm = args.launcher == "slurm"
        workers = args.workers or (p.pending_jobs if slurm else workers_here(study.gpu))
        print(p.text(study, workers, "array task(s)" if slurm else "worker(s)"), flush=True)
        if args.what == "plan":
            if args.halfwidth is not None:
                print("\n" + "\n".join(halfwidth_plan(args, study, p)))
            return
        if p.pending_jobs == 0:
            print(f"every shard of this study is finished: nothing to run (`report` reads them from {study.out})")
            return
        if p.hours > MAX_HOURS and not args.yes:
            raise ConfigError(f"this study needs about {p.hours:.1f} {p.unit} (over {MAX_HOURS:g}): add --yes to "
                              f"launch it")
        if workers < 1:
            raise ConfigError("no GPU is visible for a full-size study: run it on a GPU machine or --launcher slurm")
        check_study(study, machine=not slurm)                # data range and checkpoint too, before anything is launched
        launch(study, args.launcher, workers, cost_of(study, p), args.slurm, name=study_name(args))
    except ToolError as e:                              # bad input: one line, exit 2, nothing launched
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
