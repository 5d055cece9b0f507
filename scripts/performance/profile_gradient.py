"""Where one MCMC gradient's time goes: torch.profiler over the decoder forward, its VJP and the loss for a batch of
particles of the full-size FFHQ LDM (random weights cost what real ones do), per precision variant; the top kernels
by device time and each kind's share (convolutions, GroupNorm, SiLU and other elementwise, casts, the VQ code
search, the FFT of the loss, the rest) and the launch gaps (wall time the device spent idle between kernels).

    python scripts/performance/profile_gradient.py --device cuda --variants tf32,bf16          # on the GPU (gpu_check.sh)
    python scripts/performance/profile_gradient.py --tiny --device cpu --variants fp32,bf16     # the dry run: CPU, tiny model

Writes OUT.md and OUT.json (default benchmarks/DATE_DEVICE_profile). docs/performance.md reads it.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import re
import sys
import time
from pathlib import Path

import torch

from pipeline.build import resolve_device
from sampler.mcmc import measurement_loss_and_grad
from sampler.precision import decoder_autocast_dtype
from tracking.provenance import device_name, git_commit

ROOT = Path(__file__).resolve().parents[2]

_spec = importlib.util.spec_from_file_location("benchmark", ROOT / "scripts" / "performance" / "benchmark.py")
benchmark = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(benchmark)          # its model set-up and variants, so both measure the same thing

# a kernel's kind, by the first pattern its name matches (CUDA kernel names, or the CPU ops of a dry run)
KINDS = (
    ("convolution", r"conv|cudnn|implicit_gemm|winograd|xmma|sm\d+_.*(gemm|conv)|dgrad|wgrad|fprop"),
    ("GroupNorm", r"group_norm|groupnorm|GroupNorm|welford|native_group_norm"),
    ("cast", r"_to_copy|copy_|convert|cast"),
    ("VQ code search", r"argmin|cdist|embedding|index_select|gather"),
    ("FFT (loss)", r"fft"),
    ("matmul (attention, 1x1)", r"gemm|matmul|mm|bmm|addmm|attention|softmax|sdpa|flash"),
    ("SiLU and other elementwise", r"silu|sigmoid|elementwise|vectorized|mul|add|sub|div|pow|exp|neg|abs|sqrt|sum|"
                                   r"reduce|upsample|nearest|pad|cat|fill"),
)


def kind_of(name: str) -> str:
    for kind, pattern in KINDS:
        if re.search(pattern, name, flags=re.IGNORECASE):
            return kind
    return "other"


def profile_variant(args, variant: str, device) -> dict:
    """One variant's profile: warm-up, then `iters` gradients under torch.profiler; per kernel its device time."""
    from torch.profiler import ProfilerActivity, profile

    base = benchmark.base_config(args, "tiny" if args.tiny else "full")
    cfg = benchmark.apply_variant(base, variant)
    model, operator = benchmark.build(cfg, device, torch.float32, args.seed)
    gts = benchmark.images(cfg, 1, device, torch.float32)
    y = operator(gts).expand(args.particles, *operator(gts).shape[1:])
    g = torch.Generator().manual_seed(args.seed)
    z = torch.randn(args.particles, *model.latent_shape, generator=g).to(device)
    amp = decoder_autocast_dtype(cfg.sampler.precision)
    cuda = device.type == "cuda"

    def step():
        return measurement_loss_and_grad(model, operator, z, y, amp)

    for _ in range(args.warmup):
        step()
    if cuda:
        torch.cuda.synchronize(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    t0 = time.perf_counter()
    with profile(activities=activities) as prof:
        for _ in range(args.iters):
            step()
        if cuda:
            torch.cuda.synchronize(device)
    wall = (time.perf_counter() - t0) / args.iters
    rows = []
    for e in prof.key_averages():
        t = (getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0)) if cuda \
            else e.self_cpu_time_total
        if t > 0:
            rows.append({"name": e.key, "calls": e.count // args.iters, "time_us": t / args.iters,
                         "kind": kind_of(e.key)})
    if cuda:                                  # device kernels only: CPU-side aten ops carry no device time of their own
        rows = [r for r in rows if not r["name"].startswith(("aten::", "autograd::", "torch::", "cudaLaunch",
                                                             "cudaStream", "cudaMemcpy", "ProfilerStep"))]
    rows.sort(key=lambda r: -r["time_us"])
    busy = sum(r["time_us"] for r in rows) / 1e6
    kinds = {}
    for r in rows:
        kinds[r["kind"]] = kinds.get(r["kind"], 0.0) + r["time_us"] / 1e6
    return {"variant": variant, "particles": args.particles, "wall_s": wall, "busy_s": busy,
            "gap_s": max(wall - busy, 0.0) if cuda else None, "kinds": kinds, "top": rows[:args.top]}


def markdown(result: dict) -> str:
    lines = [f"# One MCMC gradient, profiled: {result['model']}, {result['particles']} particles", "",
             f"{result['date']}, {result['device']}, torch {result['torch']}, commit {result['git_commit']}; "
             f"`{result['command']}`; {result['iters']} gradients after {result['warmup']} warm-up ones.", ""]
    for v in result["variants"]:
        gap = "–" if v["gap_s"] is None else f"{1e3 * v['gap_s']:.1f} ms ({100 * v['gap_s'] / v['wall_s']:.0f} %)"
        lines += [f"## {v['variant']}: {1e3 * v['wall_s']:.1f} ms per gradient, kernels busy {1e3 * v['busy_s']:.1f} "
                  f"ms, launch gaps {gap}", "", "| kind | time per gradient (ms) | share of kernel time |", "|---|---|---|"]
        total = sum(v["kinds"].values()) or 1.0
        for kind, t in sorted(v["kinds"].items(), key=lambda kv: -kv[1]):
            lines.append(f"| {kind} | {1e3 * t:.2f} | {100 * t / total:.1f} % |")
        lines += ["", "| kernel | calls | time per gradient (ms) | kind |", "|---|---|---|---|"]
        for r in v["top"]:
            name = r["name"] if len(r["name"]) <= 90 else r["name"][:87] + "..."
            lines.append(f"| `{name.replace('|', '/')}` | {r['calls']} | {r['time_us'] / 1e3:.3f} | {r['kind']} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="the tiny LDM (the CPU dry run)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--variants", default="tf32,bf16", help="comma list of benchmark.py's variants")
    ap.add_argument("--particles", type=int, default=4)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", default=None, help="output path without suffix")
    args = ap.parse_args(argv)
    # what benchmark.base_config reads
    args.sampler, args.dtype, args.overrides, args.random_weights = "langevin", "float32", [], True
    args.steps = args.mcmc_steps = None
    args.refine_iters = 1
    device = resolve_device(args.device)
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    result = {"date": date, "device": device_name(device), "torch": torch.__version__, "git_commit": git_commit(),
              "command": " ".join(["python scripts/performance/profile_gradient.py", *(argv if argv is not None else sys.argv[1:])]),
              "model": "tiny LDM (32 px)" if args.tiny else "ffhq256ldm (random weights)", "particles": args.particles,
              "iters": args.iters, "warmup": args.warmup, "variants": []}
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "_".join(
        [date[:10], re.sub(r"[^a-z0-9]+", "-", result["device"].lower()).strip("-"), "profile"])
    out.parent.mkdir(parents=True, exist_ok=True)
    for variant in [v for v in args.variants.split(",") if v]:
        benchmark.parse_variant(variant)
        result["variants"].append(profile_variant(args, variant, device))
        out.with_suffix(".json").write_text(json.dumps(result, indent=1))        # after every variant: nothing lost
        out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}")
    return result


if __name__ == "__main__":
    main()
