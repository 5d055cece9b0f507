#!/usr/bin/env python
"""Time and peak memory of the particle LatentDAPS sampler per scenario and speed lever; writes JSON + Markdown.

Scenarios (P particles, default 4; t = 200 for pruning and optimisation):
  a  P sequential single-particle runs (DAPS's protocol)      e  (b) + latent optimisation from t = 200
  b  one P-particle batch                                     f  G images x P particles in one batch
  c  P -> P/2 pruning at t = 200                              g  (c) + (e): prune, then optimise from t = 200
  d  P/2 particles
Variants are '+'-joined levers: fp32 (none), tf32, bf16 (decoder autocast), cl (channels_last), compile.

  python scripts/performance/benchmark.py                       # full-size ffhq256ldm (real weights if present), preset steps
  python scripts/performance/benchmark.py --steps 10 --mcmc-steps 5          # the short version
  python scripts/performance/benchmark.py --tiny --steps 10 --mcmc-steps 2   # tiny LDM on the CPU (CI smoke test)
"""
from __future__ import annotations

import argparse
import copy
import datetime
import gc
import os
import platform
import re
import sys
import warnings
from pathlib import Path

import torch
from omegaconf import OmegaConf

from pipeline.build import model_and_operator, resolve_device
from pipeline.validate import validate
from pipeline.schema import compose as schema_compose
from pipeline.sampling import sample_batch
from pipeline.resolve import resolve
from tracking.compute import NetworkCounter
from sampler import trigger_step
from sampler.precision import set_tf32
from tracking.compute import tflop_per_row
from tracking.metric_file import write_json_atomic
from tracking.provenance import device_name, git_commit

ROOT = Path(__file__).resolve().parents[2]

TRIGGER_T = 200
LEVERS = ("fp32", "tf32", "bf16", "cl", "compile")
DEFAULT_VARIANTS = "fp32,tf32,bf16,bf16+cl"
# A tiny LDM of the real architecture (32 px images, 3x8x8 latents): CPU smoke tests, numerical checks.
TINY_MODEL = {
    "ckpt_path": None, "random_init_ok": True,
    "unet": {"image_size": 8, "in_channels": 3, "out_channels": 3, "model_channels": 32,
             "attention_resolutions": [2], "num_res_blocks": 1, "channel_mult": [1, 2], "num_head_channels": 16},
    "first_stage": {"embed_dim": 3, "n_embed": 64,
                    "ddconfig": {"double_z": False, "z_channels": 3, "resolution": 32, "in_channels": 3, "out_ch": 3,
                                 "ch": 32, "ch_mult": [1, 1, 2], "num_res_blocks": 1, "attn_resolutions": [],
                                 "dropout": 0.0}},
}


def scenarios(P: int, G: int) -> dict:
    """key -> (description, config changes, runs as a list of particle offsets, images in the batch)."""
    k = P // 2
    return {
        "a": (f"{P} sequential single-particle runs", {"particle_num": 1}, list(range(P)), 1),
        "b": (f"one {P}-particle batch", {"particle_num": P}, [0], 1),
        "c": (f"{P} -> {k} pruning at t={TRIGGER_T}", {"particle_num": P, "pruning_step": TRIGGER_T,
                                                      "pruning_keep": k}, [0], 1),
        "d": (f"{k} particles", {"particle_num": k}, [0], 1),
        "e": (f"(b) + optimisation from t={TRIGGER_T}", {"particle_num": P, "refine_step": TRIGGER_T}, [0], 1),
        "f": (f"{G} images x {P} particles, one batch", {"particle_num": P}, [0], G),
        "g": (f"(c) + optimisation from t={TRIGGER_T}", {"particle_num": P, "pruning_step": TRIGGER_T,
                                                         "pruning_keep": k, "refine_step": TRIGGER_T}, [0], 1),
    }


# ------------------------------------------------------------------------------------------------ setup

def compose(overrides: list[str]):
    return schema_compose(*overrides)


def base_config(args, model: str):
    """The run config the scenarios start from: model (ldm full/tiny or two_mode), step counts, fixed optimisation."""
    if model == "two_mode":
        over = ["model=two_mode", "sampler=two_mode", "data=two_mode"]
    else:
        over = ["model=ffhq256ldm", f"sampler={args.sampler}", "data=demo-ffhq"]
    cfg = compose(over + [f"seed={args.seed}", f"dtype={args.dtype}", "save_images=false"] + args.overrides)
    OmegaConf.set_struct(cfg, False)
    if model == "tiny":
        cfg.model = OmegaConf.merge(cfg.model, TINY_MODEL)
        cfg.data.resolution = TINY_MODEL["first_stage"]["ddconfig"]["resolution"]
    elif model == "full" and (args.random_weights or not (ROOT / str(cfg.model.ckpt_path)).is_file()):
        cfg.model.ckpt_path, cfg.model.random_init_ok = None, True
    if args.steps is not None:
        cfg.sampler.annealing.num_steps = args.steps
    if args.mcmc_steps is not None:
        cfg.sampler.mcmc.num_steps = args.mcmc_steps
    # a fixed iteration count: no threshold or plateau stop, so (e) and (g) cost the same on every run
    cfg.refine.max_iters, cfg.refine.eps, cfg.refine.plateau_window = args.refine_iters, 0.0, 0
    return cfg


def parse_variant(name: str) -> set[str]:
    tokens = set(name.split("+"))
    bad = tokens - set(LEVERS)
    if bad or not name:
        raise SystemExit(f"error: variant {name!r} has unknown levers {sorted(bad)}; levers are {', '.join(LEVERS)}")
    return tokens


def apply_variant(cfg, variant: str):
    """The variant's levers written into a copy of the config (read by the pipeline as from any run)."""
    cfg = copy.deepcopy(cfg)
    tokens = parse_variant(variant)
    cfg.sampler.precision.decoder = "bf16" if "bf16" in tokens else "fp32"
    cfg.sampler.precision.tf32 = "tf32" in tokens
    cfg.sampler.precision.compile = "compile" in tokens
    if cfg.model.name == "ldm":
        cfg.model.channels_last = "cl" in tokens
    return cfg


def build(cfg, device, dtype, seed: int):
    """Model (same random weights for every variant) and operator, levers applied as pipeline.run.run does."""
    torch.manual_seed(seed)
    set_tf32(cfg.sampler.precision.tf32)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="models.ldm.*RANDOM weights")
        return model_and_operator(cfg, device, dtype)


def images(cfg, count: int, device, dtype) -> torch.Tensor:
    """Ground truths: the two-mode benchmark's own images, else smooth random images (cost is content-blind)."""
    if cfg.model.name == "two_mode":
        from pipeline.build import dataset_of
        ds = dataset_of(OmegaConf.merge(cfg, {"num_eval_images": count, "data": {"start_index": 0}}))
        return torch.stack([ds[i][1] for i in range(count)]).to(device, dtype)
    C, H, W = (cfg.model.first_stage.ddconfig[k] for k in ("out_ch", "resolution", "resolution"))
    g = torch.Generator().manual_seed(cfg.seed)
    low = torch.rand(count, C, H // 8, W // 8, generator=g, dtype=torch.float64) * 2 - 1
    return torch.nn.functional.interpolate(low, size=(H, W), mode="bilinear", align_corners=False).to(device, dtype)


# ------------------------------------------------------------------------------------------------ scenarios

def run_scenario(model, operator, cfg, key: str, spec, device, dtype) -> tuple[dict, dict]:
    """One scenario: its table row and the final latents keyed by (image, particle id)."""
    description, changes, offsets, G = spec
    cfg = copy.deepcopy(cfg)
    for name, value in changes.items():
        cfg[name] = value
    validate(cfg)                                       # each run below resolves its particle_offset's settings
    K, M = cfg.sampler.annealing.num_steps, cfg.sampler.mcmc.num_steps
    late_k = trigger_step(TRIGGER_T, K)
    gts = images(cfg, G, device, dtype)
    row = {"scenario": key, "description": description, "images": G, "particles": cfg.particle_num * len(offsets),
           "batch": cfg.particle_num * G, "runs": len(offsets), "annealing_steps": K, "mcmc_steps": M,
           "time_s": 0.0, "peak_memory_mb": 0.0, "phases": {}, "late_time_s": 0.0 if late_k is not None else None,
           "final_particles": 0, "refine_iterations": 0, "decoder_rows": 0, "decoder_vjp_rows": 0, "denoiser_rows": 0}
    latents = {}
    for offset in offsets:
        cfg.particle_offset = offset
        with NetworkCounter(model) as counter:
            sampled = sample_batch(model, operator, gts, list(range(G)), resolve(cfg), device, dtype, counter)
        state, trace = sampled.state, sampled.trace
        row["time_s"] += sampled.total_time_s
        rows = sampled.network_rows           # counted at the model's methods (tracking/compute.py)
        row["decoder_rows"] += rows["decoder_vjp"] + rows["decoder_forward"]
        row["decoder_vjp_rows"] += rows["decoder_vjp"]
        row["denoiser_rows"] += rows["unet"]
        for ph in trace.of("phase"):
            acc = row["phases"].setdefault(ph["phase"], {"time_s": 0.0, "peak_memory_mb": 0.0, "steps": 0})
            acc["time_s"] += ph["time_s"]
            acc["steps"] += ph["steps"]
            acc["peak_memory_mb"] = max(acc["peak_memory_mb"], ph["peak_memory_mb"])
            row["memory_kind"] = ph["memory_kind"]
        if late_k is not None:
            row["late_time_s"] += sum(s["time_s"] for s in trace.of("step") if "image" not in s and "time_s" in s
                                      and s["k"] > late_k)
        row["final_particles"] += state.size // G
        row["refine_iterations"] += sum(r["iterations"] for r in trace.of("refine") if "particle" in r)
        for z, img, pid in zip(state.z, state.image_ids.tolist(), state.particle_ids.tolist()):
            latents[(img, pid)] = z.detach().cpu()
    row["peak_memory_mb"] = max(p["peak_memory_mb"] for p in row["phases"].values())
    row["time_per_image_s"] = row["time_s"] / G
    return row, latents


def max_diff(ref: dict, other: dict) -> float | None:
    """Largest |z_ref - z_other| over the particles both hold (None when they share none)."""
    common = [k for k in ref if k in other]
    if not common:
        return None
    return max(float((ref[k].double() - other[k].double()).abs().max()) for k in common)


def output_psnr(model, ref: dict, other: dict, device) -> float | None:
    """Smallest PSNR between the decoded outputs of the particles both hold (unclipped, the reference's range):
    "same outputs" in image space, where a latent difference that flips no VQ code does not show."""
    common = [k for k in ref if k in other]
    if not common:
        return None
    with torch.no_grad():
        x_ref, x = (model.decode(torch.stack([d[k] for k in common]).to(device)) for d in (ref, other))
    values = [p for p in psnr(x, x_ref, clip=False) if p is not None]
    return min(values) if values else float("inf")


def run_variant(base, variant, keys, args, device, dtype) -> list[dict]:
    cfg = apply_variant(base, variant)
    model, operator = build(cfg, device, dtype, args.seed)
    specs = scenarios(args.particles, args.images)
    if args.warmup and (device.type == "cuda" or "compile" in parse_variant(variant)):
        # first calls pay for cuDNN plans, allocator growth and compilation (every batch size): not timed
        warm = copy.deepcopy(cfg)
        warm.sampler.annealing.num_steps, warm.sampler.mcmc.num_steps = 10, 1
        warm.refine.max_iters = 2
        for key in keys:
            run_scenario(model, operator, warm, key, specs[key], device, dtype)
    rows, latents = [], {}
    for key in keys:
        # the fastest of --repeat runs: on a shared machine the others measure the neighbours
        runs = [run_scenario(model, operator, cfg, key, specs[key], device, dtype) for _ in range(args.repeat)]
        row, latents[key] = min(runs, key=lambda r: r[0]["time_s"])
        row.update(variant=variant, repeat_times_s=[r[0]["time_s"] for r in runs])
        rows.append(row)
        print(f"  {variant:>14} {key}: {row['time_s']:8.2f} s  peak {row['peak_memory_mb']:9.1f} MB", flush=True)
    by_key = {r["scenario"]: r for r in rows}
    if "a" in latents and "b" in latents:
        by_key["b"]["max_abs_diff_vs_a"] = max_diff(latents["a"], latents["b"])
        p = output_psnr(model, latents["a"], latents["b"], device)
        # JSON has no inf: identical outputs are said in a field of their own (min_psnr_vs_a is then null)
        by_key["b"]["min_psnr_vs_a"], by_key["b"]["outputs_identical_to_a"] = p, p == float("inf")
    if "b" in latents and "f" in latents:
        by_key["f"]["max_abs_diff_vs_b"] = max_diff(latents["b"], latents["f"])
    if "a" in by_key:
        for r in rows:
            # particle-images per second relative to (a): (b) and (f) do (a)'s work per image, (d) half of it
            r["speedup_vs_a"] = by_key["a"]["time_per_image_s"] / r["time_per_image_s"] * (
                r["particles"] / by_key["a"]["particles"])
    del model, operator
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rows


# ------------------------------------------------------------------------------------------------ precision check

def to_unit(x):
    return (x.double() * 0.5 + 0.5).clamp(0, 1)


def psnr(x, ref, clip: bool = True) -> list[float | None]:
    """Per-row PSNR; clip: images in [-1, 1] seen in [0, 1] (as evaluation/metrics.py), else unclipped with the
    reference's own peak-to-peak range (a random-weight decoder's outputs leave [-1, 1]). None where identical."""
    if clip:
        x, ref, peak = to_unit(x), to_unit(ref), torch.ones(x.shape[0], dtype=torch.float64, device=x.device)
    else:
        x, ref = x.double(), ref.double()
        peak = ref.flatten(1).amax(1) - ref.flatten(1).amin(1)
    mse = (x - ref).square().flatten(1).mean(1)
    return [None if m == 0 else float(10 * torch.log10(r ** 2 / m)) for m, r in zip(mse, peak)]


def precision_check(base, args, device, dtype, variants=("fp32", "tf32", "bf16")) -> dict:
    """Same run (scenario b, same seeds) under each variant: how far its outputs move from the fp32 run's."""
    out, ref = {}, None
    spec = scenarios(args.particles, 1)["b"]
    for variant in variants:
        cfg = apply_variant(base, variant)
        model, operator = build(cfg, device, dtype, args.seed)
        _, latents = run_scenario(model, operator, cfg, "b", spec, device, dtype)
        z = torch.stack([latents[k] for k in sorted(latents)]).to(device)
        set_tf32(False)                 # plain fp32 decode: only the sampling path differs between variants
        with torch.no_grad():
            x = model.decode(z)
        gt = images(cfg, 1, device, dtype)
        res = {"psnr_vs_gt": psnr(x, gt)}
        if ref is None:
            ref = (z, x, res["psnr_vs_gt"])
        else:
            between = psnr(x, ref[1], clip=False)
            gt_diff = [abs(a - b) for a, b in zip(res["psnr_vs_gt"], ref[2]) if a is not None and b is not None]
            res.update(
                identical_to_fp32=bool(torch.equal(z, ref[0])),
                psnr_vs_fp32=between,
                psnr_vs_fp32_min=min((p for p in between if p is not None), default=None),
                latent_rel_diff=float((z - ref[0]).norm() / ref[0].norm()),
                psnr_vs_gt_max_abs_diff=max(gt_diff, default=None),
            )
        out[variant] = res
        del model, operator
    return out


# ------------------------------------------------------------------------------------------------ cost model

def cost_model(cfg, P: int, preset) -> dict | None:
    """Analytic FLOPs (shapes only, meta device) of one decoder VJP and one UNet call, and of P particles' sampling
    at this run's step counts and at the preset's."""
    per_row = tflop_per_row(cfg.model)
    if per_row is None:
        return None
    vjp, unet = per_row["decoder_vjp"] * 1e12, per_row["unet"] * 1e12
    out = {"decoder_vjp_gflop": vjp / 1e9, "unet_forward_gflop": unet / 1e9, "particles": P}
    # orienting the final particles (evaluation/orientation.py): two encodes and 2 x elbo_evals UNet rows each (the
    # decode is the one the evaluation makes anyway)
    n = cfg.orientation.elbo_evals
    orient = 2 * per_row["encoder"] + 2 * n * per_row["unet"]
    out["orientation"] = {"elbo_evals": n, "unet_rows_per_particle": 2 * n, "tflop": P * orient}
    for name, s in (("run", cfg.sampler), ("preset", preset)):
        K, M, ode = s.annealing.num_steps, s.mcmc.num_steps, s.ode.num_steps
        out[name] = {"annealing_steps": K, "mcmc_steps": M, "decoder_vjps_per_particle": K * M,
                     "unet_calls_per_particle": K * ode, "decoder_share": M * vjp / (M * vjp + ode * unet),
                     "tflop": P * K * (M * vjp + ode * unet) / 1e12}
        out[name]["orientation_share"] = out["orientation"]["tflop"] / out[name]["tflop"]
    return out


# ------------------------------------------------------------------------------------------------ report

# Dense datasheet peaks (TFLOP/s) of the devices the goals are stated for; the variant picks the precision.
HOPPER_PEAKS = {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9}
DEVICE_PEAKS = {"H200": HOPPER_PEAKS, "H100": HOPPER_PEAKS}
PRESETS = {"langevin": (50, 50), "hmc": (50, 65)}       # (annealing steps, MCMC steps) of the published presets


def device_peaks(device: str) -> dict | None:
    return next((v for k, v in DEVICE_PEAKS.items() if k in device), None)


def variant_precision(variant: str) -> str:
    tokens = parse_variant(variant)
    return "bf16" if "bf16" in tokens else "tf32" if "tf32" in tokens else "fp32"


def projections(result: dict) -> list[dict]:
    """Per variant, from its scenario (b) row: seconds per decoder-VJP row (everything else included), the
    achieved TFLOP/s by the cost model, and the projected time of each full preset for one image with the same
    particles at that rate (same throughput per FLOP; the decoder VJPs are > 99 % of a preset's FLOPs)."""
    cm = result.get("cost_model")
    if not cm:
        return []
    vjp, unet = cm["decoder_vjp_gflop"] / 1e3, cm["unet_forward_gflop"] / 1e3
    peaks = device_peaks(result["device"])
    out = []
    for r in result["rows"]:
        if r["scenario"] != "b" or not r["time_s"]:
            continue
        tflop = r["decoder_vjp_rows"] * vjp + r["denoiser_rows"] * unet
        rate = tflop / r["time_s"]
        row = {"variant": r["variant"], "time_s": r["time_s"], "decoder_vjp_rows": r["decoder_vjp_rows"],
               "s_per_vjp_row": r["time_s"] / r["decoder_vjp_rows"], "tflop": tflop, "tflop_per_s": rate,
               "peak_memory_mb": r["peak_memory_mb"],
               "bf16_peak_fraction": rate / peaks["bf16"] if peaks else None,
               "own_peak_fraction": rate / peaks[variant_precision(r["variant"])] if peaks else None}
        for name, (K, M) in PRESETS.items():
            row[f"projected_{name}_s"] = r["particles"] * K * (M * vjp + 2 * unet) / rate
        out.append(row)
    return out


def goals(result: dict) -> list[dict]:
    """The GPU issue's targets, measured where this run allows: judged only for the full-size model on a GPU,
    else 'pending'."""
    rows = {(r["variant"], r["scenario"]): r for r in result["rows"]}
    s = result["settings"]
    gpu = s["model"] == "full" and result["device_type"] == "cuda"

    def status(ok):
        if not gpu or ok is None:
            return "pending (GPU run)"
        return "met" if ok else "not met"

    def get(v, k, field):
        r = rows.get((v, k))
        return None if r is None else r.get(field)

    out = []
    a, b = get("fp32", "a", "time_s"), get("fp32", "b", "time_s")
    diff, out_psnr = get("fp32", "b", "max_abs_diff_vs_a"), get("fp32", "b", "min_psnr_vs_a")
    same = get("fp32", "b", "outputs_identical_to_a") or (out_psnr is not None and out_psnr > 40)
    sp = a / b if a and b else None
    out.append({"goal": "4-particle batch >= 1.5x faster than 4 sequential runs, outputs > 40 dB apart",
                "measured": None if sp is None else f"{sp:.2f}x (fp32), outputs >= {_f(out_psnr, '{:.1f}')} dB apart "
                                                    f"(max abs dz = {_f(diff, '{:.2g}')})",
                "status": status(None if sp is None else sp >= 1.5 and same)})
    b16 = get("bf16", "b", "time_s")
    pc = (result.get("precision_check") or {}).get(s["model"], {}).get("bf16", {})
    dpsnr = pc.get("psnr_vs_gt_max_abs_diff")
    sp = b / b16 if b and b16 else None
    out.append({"goal": "bf16 decoder >= 2x faster than fp32, output PSNR change < 0.1 dB",
                "measured": None if sp is None else
                f"{sp:.2f}x" + ("" if dpsnr is None else f", |dPSNR| <= {dpsnr:.3f} dB"),
                "status": status(None if sp is None or dpsnr is None else sp >= 2 and dpsnr < 0.1)})
    proj = {p["variant"]: p for p in result.get("projections", [])}
    preset = s["sampler"]
    if proj:
        best = min(proj.values(), key=lambda p: p[f"projected_{preset}_s"])
        frac = best["bf16_peak_fraction"]
        t = best[f"projected_{preset}_s"]
        out.append({"goal": f"projected full {preset} preset, 1 image x 4 particles: <= 45 s in the best variant "
                            "(>= 30 % of bf16 peak), peak memory <= 8 GB",
                    "measured": f"{t:.1f} s ({best['variant']}), "
                                f"{_f(None if frac is None else 100 * frac, '{:.0f}')} % of bf16 peak, "
                                f"{best['peak_memory_mb'] / 1024:.2f} GB",
                    "status": status(t <= 45 and best["peak_memory_mb"] <= 8192)})
        tf = proj.get("tf32")
        out.append({"goal": f"projected full {preset} preset in TF32 <= 120 s",
                    "measured": None if tf is None else f"{tf[f'projected_{preset}_s']:.1f} s",
                    "status": status(None if tf is None else tf[f"projected_{preset}_s"] <= 120)})
    # pruning: on strict fp32 rows where the run has them, else on TF32's (the GPU check runs TF32 only)
    pv = "fp32" if rows.get(("fp32", "c")) else "tf32"
    cb, cc = get(pv, "b", "late_time_s"), get(pv, "c", "late_time_s")
    mb = (get(pv, "b", "phases") or {}).get("explore", {}).get("peak_memory_mb")
    mc = (get(pv, "c", "phases") or {}).get("prune", {}).get("peak_memory_mb")
    cut_t = 1 - cc / cb if cb and cc is not None else None
    cut_m = 1 - mc / mb if mb and mc is not None and result["device_type"] == "cuda" else None
    out.append({"goal": "pruning 4->2 at t=200: time after it -40 %, its peak memory -35 %",
                "measured": None if cut_t is None else
                f"time {-100 * cut_t:+.0f} %, memory " + ("n/a on CPU (peak RSS)" if cut_m is None else
                                                          f"{-100 * cut_m:+.0f} %") + f" ({pv})",
                "status": status(None if cut_t is None or cut_m is None else cut_t >= 0.4 and cut_m >= 0.35)})
    return out


def _f(v, fmt="{:.2f}"):
    return "–" if v is None else fmt.format(v)


def markdown(result: dict) -> str:
    s = result["settings"]
    lines = [f"# LatentDAPS benchmark, {result['date']}", "",
             f"- device: **{result['device']}** (host {result['host']['cpu']}, {result['host']['cpu_count']} cores, "
             f"load {result['host']['load_average'][0]:.1f}), torch {result['torch']}, commit `{result['git_commit']}`",
             f"- model: {s['model_label']}; sampler {s['sampler']} (K = {s['annealing_steps']} annealing steps x "
             f"M = {s['mcmc_steps']} MCMC steps, ODE {s['ode_steps']}); dtype {s['dtype']}; optimisation "
             f"{s['refine_iters']} iterations per call; memory: {result.get('memory_kind', '–')}",
             f"- command: `{result['command']}`", "",
             "| variant | scen. | what | batch (images x particles) | final | time s | s / image | "
             "throughput vs (a) | peak MB | after t=200 s | decoder VJP rows | UNet rows |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        batch = f"{r['batch']} ({r['images']}x{r['batch'] // r['images']})" + (f" x {r['runs']} runs" if r["runs"] > 1 else "")
        lines.append(f"| {r['variant']} | {r['scenario']} | {r['description']} | {batch} | {r['final_particles']} | "
                     f"{_f(r['time_s'])} | {_f(r['time_per_image_s'])} | {_f(r.get('speedup_vs_a'), '{:.2f}x')} | "
                     f"{_f(r['peak_memory_mb'], '{:.0f}')} | {_f(r['late_time_s'])} | {r['decoder_rows']} | "
                     f"{r['denoiser_rows']} |")
    eq = [(r["variant"], r["max_abs_diff_vs_a"], r.get("min_psnr_vs_a")) for r in result["rows"]
          if r.get("max_abs_diff_vs_a") is not None]
    if eq:
        lines += ["", "Batch = sequential (same outputs): max |z_b - z_a| over particles, and the smallest PSNR "
                  "between their decoded outputs: " + ", ".join(f"{v} {d:.2g} ({_f(p, '{:.1f}')} dB)" for v, d, p in eq)]
    if result.get("projections"):
        lines += ["", "## Throughput per variant (scenario b) and the full presets projected at that rate", "",
                  "| variant | s per decoder-VJP row | achieved TFLOP/s | of bf16 peak | of its precision's peak | "
                  "Langevin 50x50, 1 image x 4 s | HMC 50x65, 1 image x 4 s | peak MB |",
                  "|---|---|---|---|---|---|---|---|"]
        for p in result["projections"]:
            pct = (lambda v: _f(None if v is None else 100 * v, "{:.1f} %"))
            lines.append(f"| {p['variant']} | {p['s_per_vjp_row']:.4g} | {p['tflop_per_s']:.3g} | "
                         f"{pct(p['bf16_peak_fraction'])} | {pct(p['own_peak_fraction'])} | "
                         f"{p['projected_langevin_s']:.1f} | {p['projected_hmc_s']:.1f} | {p['peak_memory_mb']:.0f} |")
        lines += ["", "Seconds per decoder-VJP row: the scenario's time over its decoder VJP rows (UNet and the rest "
                  "included). TFLOP by the cost model below; peaks are dense datasheet figures."]
    lines += ["", "## Goals", "", "| goal | measured | status |", "|---|---|---|"]
    lines += [f"| {g['goal']} | {g['measured'] or '–'} | {g['status']} |" for g in result["goals"]]
    if result.get("precision_check"):
        lines += ["", "## Precision check (scenario b, same seeds; outputs decoded in fp32)", "",
                  "| model | variant | identical to fp32 | PSNR vs fp32 output (unclipped), min dB | latent rel. diff | "
                  "max abs PSNR-vs-GT diff dB |", "|---|---|---|---|---|---|"]
        for model, res in result["precision_check"].items():
            for v, r in res.items():
                if v == "fp32":
                    continue
                lines.append(f"| {model} | {v} | {r['identical_to_fp32']} | "
                             f"{_f(r['psnr_vs_fp32_min']) if not r['identical_to_fp32'] else 'inf'} | "
                             f"{r['latent_rel_diff']:.2e} | {_f(r['psnr_vs_gt_max_abs_diff'], '{:.4f}')} |")
    cm = result.get("cost_model")
    if cm:
        lines += ["", f"Cost model (FLOP counter): decoder VJP {cm['decoder_vjp_gflop']:.3g} GFLOP, UNet forward "
                  f"{cm['unet_forward_gflop']:.3g} GFLOP per particle."]
        for name, c in (("this run", cm["run"]), ("the preset", cm["preset"])):
            lines.append(f"At {name}'s K = {c['annealing_steps']}, M = {c['mcmc_steps']}: {c['decoder_vjps_per_particle']}"
                         f" decoder VJPs + {c['unet_calls_per_particle']} UNet calls per particle, the decoder "
                         f"{100 * c['decoder_share']:.1f} % of the FLOPs, {c['tflop']:.3g} TFLOP for "
                         f"{cm['particles']} particles; orienting them by the prior ({cm['orientation']['elbo_evals']}"
                         f" ELBO evaluations) adds {cm['orientation']['tflop']:.3g} TFLOP, "
                         f"{100 * c['orientation_share']:.2f} %.")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------ main

def host() -> dict:
    """The machine beside the device: CPU model, cores, load (timings on a shared machine need the load)."""
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "load_average": list(os.getloadavg()),
            "python": platform.python_version()}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="tiny LDM of the real architecture, random weights (CPU CI)")
    p.add_argument("--sampler", default="langevin", choices=["langevin", "hmc"])
    p.add_argument("--steps", type=int, default=None, help="annealing steps K (default: the preset's 50)")
    p.add_argument("--mcmc-steps", type=int, default=None, help="MCMC steps per annealing step (preset: 50 / 65)")
    p.add_argument("--refine-iters", "--opt-iters", type=int, default=100, help="latent-optimisation iterations per call, (e) and (g)")
    p.add_argument("--particles", type=int, default=4)
    p.add_argument("--images", type=int, default=4, help="images in one batch for scenario (f)")
    p.add_argument("--scenarios", default="abcdefg", help="subset of abcdefg, or 'none'")
    p.add_argument("--variants", default=DEFAULT_VARIANTS, help=f"comma list of '+'-joined levers from {LEVERS}")
    p.add_argument("--precision-check", action="store_true",
                   help="also compare fp32 / tf32 / bf16 outputs of one run, on this model and on two_mode")
    p.add_argument("--random-weights", action="store_true", help="random weights even when the checkpoint exists")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--repeat", type=int, default=1, help="runs per scenario; the fastest is reported")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--no-warmup", dest="warmup", action="store_false",
                   help="skip the untimed warm-up (on CUDA and for compiled variants)")
    p.add_argument("--out", default=None, help="output path without suffix (default: benchmarks/DATE_DEVICE_MODEL)")
    p.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. sampler.ode.num_steps=1")
    args = p.parse_args(argv)
    args.scenarios = "" if args.scenarios == "none" else args.scenarios
    if set(args.scenarios) - set("abcdefg"):
        p.error(f"--scenarios {args.scenarios!r}: use letters from abcdefg")
    if args.particles < 2:
        p.error("--particles must be >= 2 (pruning keeps half)")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = "tiny" if args.tiny else "full"
    base = base_config(args, model)
    device, dtype = resolve_device(args.device), getattr(torch, args.dtype)
    variants = [v for v in args.variants.split(",") if v]
    for v in variants:
        parse_variant(v)
    K, M = base.sampler.annealing.num_steps, base.sampler.mcmc.num_steps
    if set(args.scenarios) & set("ceg") and trigger_step(TRIGGER_T, K) in (None, K - 1):
        raise SystemExit(f"error: with {K} annealing steps no step follows t={TRIGGER_T}: scenarios c, e, g need "
                         f"one, e.g. --steps 10 (or leave them out with --scenarios)")
    preset = compose([f"sampler={args.sampler}"]).sampler
    weights = "random" if base.model.get("ckpt_path") is None else str(base.model.ckpt_path)
    label = ("tiny LDM (32 px, random weights)" if args.tiny else f"ffhq256ldm ({weights} weights)")
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": device_name(device), "device_type": device.type, "host": host(), "torch": torch.__version__, "git_commit": git_commit(),
        "command": " ".join(["python scripts/performance/benchmark.py", *(argv if argv is not None else sys.argv[1:])]),
        "settings": {**{k: v for k, v in vars(args).items()}, "model": model, "model_label": label,
                     "weights": weights, "annealing_steps": K, "mcmc_steps": M,
                     "ode_steps": base.sampler.ode.num_steps, "cpu_threads": torch.get_num_threads(),
                     "full_steps": K == preset.annealing.num_steps and M == preset.mcmc.num_steps,
                     "config": OmegaConf.to_container(base, resolve=True)},
        "rows": [],
    }
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "_".join([
        result["date"][:10], re.sub(r"[^a-z0-9]+", "-", result["device"].lower()).strip("-"), model])
    out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> str:
        # after every variant too: a run killed by a time limit keeps what it measured
        if result["rows"]:
            result["memory_kind"] = result["rows"][0].get("memory_kind")
        result["cost_model"] = cost_model(base, args.particles, preset)
        result["projections"] = projections(result)
        result["goals"] = goals(result)
        write_json_atomic(out.with_suffix(".json"), result)
        text = markdown(result)
        out.with_suffix(".md").write_text(text)
        return text

    print(f"benchmark on {result['device']}: {label}, K={K}, M={M}", flush=True)
    for variant in variants if args.scenarios else []:
        result["rows"] += run_variant(base, variant, list(args.scenarios), args, device, dtype)
        save()
    if args.precision_check:
        two = base_config(args, "two_mode")
        result["precision_check"] = {model: precision_check(base, args, device, dtype),
                                     "two_mode": precision_check(two, args, device, dtype)}
    print(save())
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return result


if __name__ == "__main__":
    main()
