"""One run: check everything, then sample the images in batches (images_per_batch at a time), evaluate each image's
particles and keep metric.json current."""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf
from tqdm import tqdm

from evaluation.failures import representability, truths
from evaluation.orientation import method_of
from evaluation.trust import orientation_check
from evaluation.perceptual import load_lpips
from evaluation.record import evaluate_image, image_record, stage_records
from evaluation.summary import summarize
from models import mode_weights
from pipeline.build import dataset_of, model_and_operator, prepare
from pipeline import report
from pipeline.validate import validate
from pipeline.run_folder import clear_outputs, default_name, previous_run
from pipeline.sampling import sample_batch, split
from pipeline.resolve import RunSettings
from sampler import sampler_record
from tracking.compute import NetworkCounter, tflop_per_row
from tracking.metric_file import write_json_atomic
from tracking.provenance import provenance, version


_COST = {}


def cost_per_row(model_block) -> dict | None:
    """tracking.compute.tflop_per_row, counted once per model config."""
    if model_block not in _COST:
        _COST[model_block] = tflop_per_row(model_block)
    return _COST[model_block]


def run_batch(model, operator, items, settings: RunSettings, device, dtype, counter, lpips_model=None,
              out_dir=None, stored_check: dict | None = None, save_images: bool = False) -> list[dict]:
    """Sample settings.particle_num particles for each (index, name, gt) of `items` in one batch; their records.
    counter: a tracking.compute.NetworkCounter on the model; stored_check: the model's stored orientation check
    (evaluation/trust.orientation_check); save_images: the PNGs into out_dir."""
    K = settings.sampler.num_steps
    indices = [index for index, _, _ in items]
    # data.ground_truth=decoded: the truths the model can make, D(E(x)); raw: the images, with their reconstructions
    gts, recs, first_stage_psnr = truths(model, torch.stack([gt for _, _, gt in items]).to(device, dtype),
                                         settings.data)
    label = f"image {indices[0]} ({items[0][1]})" if len(items) == 1 else f"images {', '.join(map(str, indices))}"
    bar = tqdm(total=K, desc=label, leave=False, file=sys.stderr, disable=not sys.stderr.isatty())

    def progress(ctx, best_loss, particles):
        bar.set_postfix_str(f"k={ctx.k} t={ctx.t} σ={ctx.sigma:.3g} best loss={best_loss:.4g} n={particles}")
        bar.update(1)

    sampled = sample_batch(model, operator, gts, indices, settings, device, dtype, counter, progress)
    bar.close()
    records = []
    for i, ((index, name, _), gt, result) in enumerate(zip(items, gts, split(sampled))):
        rep = representability(operator, gt[None], None if recs is None else recs[i:i + 1], result.y,
                               first_stage_psnr[i])
        evaluated = evaluate_image(model, operator, result, gt[None], settings.eval, lpips_model, counter, rep,
                                   stored_check)
        sections = {**stage_records(result.trace, settings.active), **sampler_record(result.trace, settings.sampler)}
        record = image_record(result, name, evaluated, settings.eval, sections, cost_per_row(settings.model),
                              # the operator decides whether there is a 180° mode to weigh; the model knows its weight
                              mode_weights(settings.model) if operator.rotation_ambiguous else None)
        if out_dir is not None and save_images:
            from tracking.images import save_image_outputs
            final = [p for p in evaluated.particles if p["pruned_at"] is None]
            save_image_outputs(out_dir, index, gt[None], result.y, evaluated.x, result.particle_ids, final,
                               evaluated.dropped, answer=record["best_by_prior"], trust=record["trust"])
        records.append(record)
    return records


def run_image(model, operator, name, gt, image_index, settings: RunSettings, device, dtype, lpips_model=None):
    """One image alone in its batch (the studies and tests use it); returns its metric.json record."""
    with NetworkCounter(model) as counter:
        return run_batch(model, operator, [(image_index, name, gt)], settings, device, dtype, counter, lpips_model,
                         stored_check=orientation_check(settings.model))[0]


def run(cfg, argv=None, choices: dict | None = None) -> dict:
    """Check cfg, run every image and keep metric.json current; returns the final metric dict.

    Everything that can fail on bad input (the config, the earlier run in the folder, the data, every image of the
    range, the LPIPS weights, the checkpoint) is checked before the folder is touched; config.yaml comes after.
    choices: Hydra's config-group choices, for the default name."""
    settings = validate(cfg)
    device, dtype = prepare(cfg)
    cfg.device = str(device)           # as resolved: auto and cpu on a CPU are the same settings to continue a run
    if cfg.name is None:
        cfg.name = default_name(cfg, choices)
    out_dir = Path(cfg.save_dir) / cfg.name
    resolved = OmegaConf.to_container(cfg, resolve=True)
    metric_path = out_dir / "metric.json"
    images, earlier, note = previous_run(cfg, out_dir, resolved)

    dataset = dataset_of(cfg)                        # every image of the range opens: no failure after an hour
    model, operator = model_and_operator(cfg, device, dtype)
    lpips_model = load_lpips(cfg.eval.lpips_variant, cfg.eval.lpips_weights, device)   # its note: nothing failed

    if note:
        print(f"note: {note}", file=sys.stderr)
    stored_check = orientation_check(settings.model)
    if stored_check is None and operator.rotation_ambiguous and method_of(model, settings.eval.orientation) == "elbo":
        print(f"note: this model has no stored orientation check, so an answer's orientation is judged by its own "
              f"ELBO gap alone; store one with: python scripts/orientation_on_truths.py --write "
              f"{cfg.model.get('ckpt_path') or '(a checkpoint)'}", file=sys.stderr)
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
    stamp = version()                                # every new image names the code that made it
    report.echo(report.header(cfg.particle_num))
    for im in images:                                # the images an earlier run finished, then each new one
        report.echo(report.row(im))
    with NetworkCounter(model) as counter:
        for start in range(0, len(pending), cfg.images_per_batch):
            items = [(dataset.indices[i], *dataset[i]) for i in pending[start:start + cfg.images_per_batch]]
            new = run_batch(model, operator, items, settings, device, dtype, counter, lpips_model, out_dir,
                            stored_check, cfg.save_images)
            for im in new:
                im["provenance"] = stamp
            images.extend(new)
            images.sort(key=lambda im: im["index"])
            metric["summary"] = summarize(images)
            write_json_atomic(metric_path, metric)
            for im in new:
                report.echo(report.row(im))
    return metric
