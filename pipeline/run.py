"""One run: measure images, sample all their particles in one batch (images_per_batch images at a time),
evaluate each particle and keep metric.json current."""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf
from tqdm import tqdm

from data import build_dataset
from evaluation.metrics import best_of_n, evaluate_particles
from evaluation.perceptual import load_lpips
from evaluation.summary import summarize
from models import build_model
from operators import build_operator
from sampler import (ParticleState, init_latents, latent_daps, measurement_generator, particle_generator,
                     trigger_step)
from pipeline.checks import fail
from sampler.state import orientation_generator, rows as rows_of
from sampler.precision import compile_model, decoder_autocast_dtype, set_tf32
from tracking.metric_file import read_json, write_json_atomic
from tracking.compute import NetworkCounter, compute_record, tflop_per_row
from tracking.provenance import provenance
from tracking.tracker import RunTracker, image_view


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def phase_boundaries(cfg):
    """(prune step, refine step) in annealing-step indices, None when off."""
    K = cfg.sampler.annealing.num_steps
    return trigger_step(cfg.pruning_step, K), trigger_step(cfg.optimization_step, K)


def phase_function(prune_k, refine_k):
    """Phase of step k: refine from the refine trigger, prune after the pruning step, explore before."""
    def phase_of(k: int) -> str:
        if refine_k is not None and k >= refine_k:
            return "refine"
        if prune_k is not None and k > prune_k:
            return "prune"
        return "explore"
    return phase_of


def build_hooks(cfg, prune_k, refine_k) -> list:
    """Explore (repulsion), prune and refine hooks, in the order they must act after each step."""
    hooks = []
    if cfg.repulsion_scale > 0:
        from particle import RepulsionHook
        hooks.append(RepulsionHook.from_config(cfg, prune_k, refine_k))
    if prune_k is not None:
        from particle import PruningHook
        hooks.append(PruningHook.from_config(cfg, prune_k))
    if refine_k is not None:
        from resample_opt import RefineHook
        hooks.append(RefineHook.from_config(cfg, refine_k))
    return hooks


def make_state(model, y, cfg, image_index: int, device, dtype) -> ParticleState:
    ids = list(range(cfg.particle_offset, cfg.particle_offset + cfg.particle_num))
    gens = [particle_generator(cfg.seed, image_index, i, device) for i in ids]
    z = init_latents(gens, model.latent_shape, cfg.sampler.annealing.sigma_max, device, dtype)
    P = len(ids)
    return ParticleState(
        z=z, y=y.expand(P, *y.shape[1:]).clone(), generators=gens,
        particle_ids=torch.tensor(ids, device=device), image_ids=torch.full((P,), image_index, device=device),
        alive=torch.ones(P, dtype=torch.bool, device=device), loss=torch.full((P,), float("inf"), device=device),
    )


def _particle_rows(x, gt, y, operator, cfg, lpips_model, particle_ids, alive, pruned=None):
    rows = evaluate_particles(x, gt, cfg.data.fail_psnr, lpips_model)
    losses = operator.loss(x, y.expand(x.shape[0], *y.shape[1:])).tolist()
    for row, pid, loss, ok in zip(rows, particle_ids, losses, alive):
        row.update(particle=int(pid), measurement_loss=loss, failed=not bool(ok), pruned_at=pruned)
        if not ok:
            row["mode"] = "fail"
    return rows


def sample_batch(model, operator, gts, indices, cfg, device, dtype, progress=None):
    """Measure each image and sample all its particles, every image's particles in one batch.

    gts: (G, C, H, W) on device; indices: the images' data-set indices (they seed the noise, so an image's
    result does not depend on which images share its batch, beyond float round-off).
    Returns (ys, final state, timing, hooks).
    """
    ys = [operator.measure(gt[None], generator=measurement_generator(cfg.seed, i)) for gt, i in zip(gts, indices)]
    state = ParticleState.cat([make_state(model, y, cfg, i, device, dtype) for y, i in zip(ys, indices)])
    prune_k, refine_k = phase_boundaries(cfg)
    hooks = build_hooks(cfg, prune_k, refine_k)
    if cfg.eval.get("per_step", False):
        from evaluation.trajectory import GroundTruthHook
        hooks.append(GroundTruthHook(gts, indices, cfg.data.fail_psnr))     # last: it sees each step's final z0
    tracker = RunTracker(device, progress)
    with NetworkCounter(model) as counter:
        state = latent_daps(model, operator, state, cfg.sampler, hooks, phase_function(prune_k, refine_k), tracker,
                            decoder_autocast_dtype(cfg.sampler.precision))
    return ys, state, {**tracker.finish(), "network_rows": counter.rows}, hooks


_COST = {}


def cost_per_row(model_cfg) -> dict | None:
    """tracking.compute.tflop_per_row, counted once per model config."""
    key = OmegaConf.to_yaml(model_cfg)
    if key not in _COST:
        _COST[key] = tflop_per_row(model_cfg)
    return _COST[key]


def _orient(model, z, x, gt, cfg, lpips_model, index, rows) -> dict:
    """Each final particle's prior_log_ratio and its oriented image's metrics (x, or rot x where the prior prefers
    it), written into its row; returns the orientation's cost record."""
    from evaluation.orientation import prior_log_ratio
    from operators.phase_retrieval import rot180

    with NetworkCounter(model) as counter:
        ratio = prior_log_ratio(model, z, cfg.orientation, orientation_generator(cfg.seed, index), x)
    flip = (ratio < 0).to(x.device)
    oriented = evaluate_particles(torch.where(rows_of(flip, x), rot180(x), x), gt, cfg.data.fail_psnr, lpips_model)
    for row, r, f, o in zip(rows, ratio.tolist(), flip.tolist(), oriented):
        row["prior_log_ratio"] = r
        row["oriented"] = {"rotated": f, **{k: o[k] for k in ("psnr", "ssim", "lpips", "mode")}}
        if row["failed"]:
            row["oriented"]["mode"] = "fail"
    return {"method": cfg.orientation.method, **compute_record(counter.rows, cost_per_row(cfg.model))}


def best_by_prior(alive: list[dict]) -> dict:
    """The choice without the ground truth: the particle with the lowest measurement loss (the loss cannot tell an
    orientation, but it tells a fit from a failure), in the orientation its prior prefers."""
    p = min(alive, key=lambda q: q["measurement_loss"])
    return {"particle": p["particle"], "prior_log_ratio": p["prior_log_ratio"], **p["oriented"]}


def _image_record(model, operator, index, name, gt, y, state, timing, hooks, cfg, lpips_model, out_dir, batch):
    """metric.json's entry for one image of a sampled batch: its particles, pruned ones too, and its share."""
    mine = (state.image_ids == index).nonzero().flatten()
    final_state = state.select(mine)
    x = model.decode(final_state.z)
    particles = _particle_rows(x, gt, y, operator, cfg, lpips_model, final_state.particle_ids.tolist(),
                               final_state.alive.tolist())
    orientation = _orient(model, final_state.z, x, gt, cfg, lpips_model, index, particles)
    dropped_images = []
    for rec in state.dropped:
        rows = [j for j, g in enumerate(rec["image_ids"]) if g == index]
        if not rows:
            continue
        pids = [rec["particle_ids"][j] for j in rows]
        xd = model.decode(rec["z0"][rows])
        particles += _particle_rows(xd, gt, y, operator, cfg, lpips_model, pids, [True] * len(pids),
                                    {"k": rec["k"], "t": rec["t"]})
        dropped_images.append((pids, xd))
    particles.sort(key=lambda p: p["particle"])
    final = [p for p in particles if p["pruned_at"] is None]
    alive = [p for p in final if not p["failed"]] or final
    view = image_view(timing, index, len(batch))
    record = {
        "index": index, "name": name,
        "particles": particles,
        "best_of_n": best_of_n(final),
        "best_oracle": max(final, key=lambda p: p["psnr"]),
        "best_by_loss": min(alive, key=lambda p: p["measurement_loss"]),
        "best_by_prior": best_by_prior(alive),
        "orientation": orientation,
        "modes": {m: sum(p["mode"] == m for p in final) for m in ("0", "180", "fail")},
        "gt_mode_found": any(p["mode"] == "0" for p in final),
        "both_modes": any(p["mode"] == "0" for p in final) and any(p["mode"] == "180" for p in final),
        "phases": view["phases"], "total_time_s": view["total_time_s"],
        # the sampler's network work (evaluation decodes excluded); the batch's divided by its image count
        "compute": compute_record(timing["network_rows"], cost_per_row(cfg.model), len(batch)),
        "batch": {"indices": batch, "total_time_s": timing["total_time_s"]},
        "boundaries": dict(zip(("prune_k", "refine_k"), phase_boundaries(cfg))),
        "steps": view["steps"],
    }
    for h in hooks:
        record.update(h.report(index))
    if out_dir is not None and cfg.save_images:
        from tracking.images import save_image_outputs
        save_image_outputs(out_dir, index, gt, y, x, final_state.particle_ids.tolist(), final, dropped_images,
                           chosen=record["best_by_loss"]["particle"])
    return record


def run_batch(model, operator, items, cfg, device, dtype, lpips_model=None, out_dir=None) -> list[dict]:
    """Sample cfg.particle_num particles for each (index, name, gt) of `items` in one batch; their records."""
    K = cfg.sampler.annealing.num_steps
    indices = [index for index, _, _ in items]
    gts = torch.stack([gt for _, _, gt in items]).to(device, dtype)
    label = f"image {indices[0]} ({items[0][1]})" if len(items) == 1 else f"images {', '.join(map(str, indices))}"
    bar = tqdm(total=K, desc=label, leave=False, file=sys.stderr,
               disable=not sys.stderr.isatty() and not cfg.get("progress", False))

    def progress(ctx, best_loss, particles):
        bar.set_postfix_str(f"k={ctx.k} t={ctx.t} σ={ctx.sigma:.3g} best loss={best_loss:.4g} n={particles}")
        bar.update(1)

    ys, state, timing, hooks = sample_batch(model, operator, gts, indices, cfg, device, dtype, progress)
    bar.close()
    with torch.no_grad():
        return [_image_record(model, operator, index, name, gt[None], y, state, timing, hooks, cfg, lpips_model,
                              out_dir, indices)
                for (index, name, _), gt, y in zip(items, gts, ys)]


def run_image(model, operator, name, gt, image_index, cfg, device, dtype, lpips_model=None, out_dir=None):
    """One image alone in its batch (the studies and tests use it); returns its metric.json record."""
    return run_batch(model, operator, [(image_index, name, gt)], cfg, device, dtype, lpips_model, out_dir)[0]


# settings that change no result: a resumed run may differ in them (num_eval_images: more images extend the run)
# (images_per_batch is not among them: the times per image of two batch sizes would mix)
RESUMABLE = ("resume", "overwrite", "save_images", "progress", "num_eval_images", "save_dir")


def config_diff(a, b, prefix="") -> list[str]:
    """Dotted keys whose values differ between two resolved configs (for the resume refusal message)."""
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return [] if a == b else [prefix.rstrip(".") or "<root>"]
    return [d for k in sorted(set(a) | set(b), key=str)
            for d in config_diff(a.get(k), b.get(k), f"{prefix}{k}.")]


def default_name(cfg, choices: dict | None = None) -> str:
    """What ran: model, data, sampler (config-group choices where Hydra gives them) and the stage flags that are
    on, repeated words dropped, e.g. `two_mode_p4` or `ffhq256ldm_demo-ffhq_hmc_p4_rep0.3_prune200k2`."""
    choices = choices or {}
    words = [choices.get("model", cfg.model.name), cfg.data.name, choices.get("sampler", cfg.sampler.mcmc.algo),
             f"p{cfg.particle_num}"]
    if cfg.repulsion_scale > 0:
        words.append(f"rep{cfg.repulsion_scale:g}")
    if cfg.pruning_step >= 0:
        words.append(f"prune{cfg.pruning_step}k{cfg.pruning_keep}")
    if cfg.optimization_step >= 0:
        words.append(f"opt{cfg.optimization_step}")
    return "_".join(dict.fromkeys(words))


def previous_run(cfg, out_dir: Path, resolved: dict) -> tuple[list, list]:
    """The earlier run in out_dir that this one continues (resume=true): its images and provenance records; a
    one-line refusal where continuing or starting would mix or destroy results."""
    metric_path = out_dir / "metric.json"
    if not metric_path.exists() or cfg.overwrite:
        return [], []
    try:
        old = read_json(metric_path)
    except (OSError, ValueError) as e:
        fail(f"{metric_path} cannot be read ({e}); move it away or pass overwrite=true")
    images = old.get("images", [])
    if not cfg.resume:
        if images:
            fail(f"{metric_path} already holds {len(images)} image(s): pass resume=true to continue it, another "
                   f"name= for a new run, or overwrite=true to replace it")
        return [], []
    keep = lambda c: {k: v for k, v in c.items() if k not in RESUMABLE}  # noqa: E731
    diff = config_diff(keep(old.get("config", {})), keep(resolved))
    if diff:
        shown = ", ".join(diff[:5]) + (f" (+{len(diff) - 5} more)" if len(diff) > 5 else "")
        fail(f"resume=true but {metric_path} was run with a different config ({shown}); "
               f"use the same settings, another name=, or overwrite=true")
    # the finished images may come from other commits or machines: keep every earlier run's record
    return images, old.get("provenance", {}).pop("earlier_runs", []) + [old.get("provenance")]


def clear_outputs(out_dir: Path) -> None:
    """overwrite=true: this tool's outputs of an earlier run in out_dir, and nothing else."""
    import shutil

    for name in ("metric.json", "config.yaml"):
        (out_dir / name).unlink(missing_ok=True)
    shutil.rmtree(out_dir / "images", ignore_errors=True)


def run(cfg, argv=None) -> dict:
    """Run every image of cfg and keep metric.json current; returns the final metric dict.

    Everything that can fail on bad input (the earlier run in the folder, the data, every image of the range, the
    LPIPS weights, the checkpoint) is checked before the folder is touched; config.yaml comes after."""
    device = resolve_device(cfg.device)
    dtype = getattr(torch, cfg.dtype)
    if device.type == "cpu" and cfg.model.get("cpu_threads"):
        torch.set_num_threads(cfg.model.cpu_threads)
    set_tf32(cfg.sampler.precision.tf32)
    if cfg.name is None:
        cfg.name = default_name(cfg)
    out_dir = Path(cfg.save_dir) / cfg.name
    resolved = OmegaConf.to_container(cfg, resolve=True)
    metric_path = out_dir / "metric.json"
    images, earlier = previous_run(cfg, out_dir, resolved)

    dataset = build_dataset(cfg.data, cfg.model, cfg.data.start_index, cfg.num_eval_images)
    dataset.verify()                                 # every image of the range opens: no failure after an hour
    lpips_model = load_lpips(cfg.eval.lpips_variant, cfg.eval.lpips_weights, device)
    model = build_model(cfg.model, device).to(dtype)
    if cfg.sampler.precision.get("compile", False):
        compile_model(model)
    operator = build_operator(cfg.task, model.image_shape[-1])

    if cfg.overwrite:
        clear_outputs(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, out_dir / "config.yaml", resolve=True)
    done = {im["index"] for im in images}
    metric = {"provenance": provenance(device, argv), "config": resolved,
              "lpips": {"variant": cfg.eval.lpips_variant, "weights": getattr(lpips_model, "source", None)},
              "images": images, "summary": summarize(images)}
    if earlier:
        metric["provenance"]["earlier_runs"] = earlier
    # written before the first image too, so no stale metric.json of another config survives an early interrupt
    write_json_atomic(metric_path, metric)
    pending = [i for i in range(len(dataset)) if dataset.indices[i] not in done]
    for start in range(0, len(pending), cfg.images_per_batch):
        items = [(dataset.indices[i], *dataset[i]) for i in pending[start:start + cfg.images_per_batch]]
        images.extend(run_batch(model, operator, items, cfg, device, dtype, lpips_model, out_dir))
        images.sort(key=lambda im: im["index"])
        metric["summary"] = summarize(images)
        write_json_atomic(metric_path, metric)
    return metric
