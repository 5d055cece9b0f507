#!/usr/bin/env bash
# The GPU check: the CUDA tests on the tiny LDM; a profile of one MCMC gradient of the full-size ffhq256ldm (random
# weights, 4 particles, TF32 and bf16: where the time goes); the short benchmark in TF32 (scenarios b-d, projected to
# the full presets); and the command line itself on CUDA at full size with the full Langevin preset (1 image x 4
# particles, 4 -> 2 at t = 200, 1 particle: metric.json with per-phase time and memory), all written under $OUT.
# Sized to end within 8 minutes on an H200; each part has its own time limit and saves what it measured as it goes.
#
#   bash scripts/performance/gpu_check.sh --prepare   # here, after `pip install -r requirements.txt`: copy the pure-Python
#                                         # packages the device lacks into .pydeps/ (git-ignored)
#   bash scripts/performance/gpu_check.sh             # on the device: carry .pydeps; OUT=... names the output folder
#   bash scripts/performance/gpu_check.sh --dry-run   # the same plan on the CPU with the tiny model and the digits mini LDM
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
DEPS=(antlr4 hydra omegaconf piq lpips)      # hydra-core and its grammar runtime, omegaconf, piq, lpips

mode=gpu
case "${1:-}" in
  --prepare)
    site=$("$PY" -c 'import omegaconf, pathlib; print(pathlib.Path(omegaconf.__file__).parents[1])') || {
      echo "error: $PY cannot import omegaconf: run pip install -r requirements.txt first" >&2; exit 2; }
    rm -rf .pydeps && mkdir -p .pydeps
    for d in "${DEPS[@]}"; do cp -r "$site/$d" .pydeps/ || exit 2; done
    find .pydeps -name __pycache__ -prune -exec rm -rf {} +
    echo "wrote .pydeps ($(du -sh .pydeps | cut -f1)); pass carry=[\".pydeps\"] to the device run"
    exit 0 ;;
  --dry-run) mode=dry ;;
  "") ;;
  *) echo "usage: bash scripts/performance/gpu_check.sh [--prepare | --dry-run]" >&2; exit 2 ;;
esac

OUT=${OUT:-results/gpu_check}
mkdir -p "$OUT"
. scripts/performance/_device.sh             # this checkout and .pydeps on PYTHONPATH

if [ "$mode" = dry ]; then
  export GPU_CHECK_DEVICE=cpu OMP_NUM_THREADS=1
  BENCH=(--tiny --device cpu --threads 1 --steps 10 --mcmc-steps 1 --refine-iters 2)
  PROFILE=(--tiny --device cpu --iters 2 --warmup 1)
  # the command line's path on the CPU: the digits mini LDM, 5 annealing steps of 1 MCMC step
  CLI=(model=digits32ldm sampler=digits32ldm data=digits device=cpu sampler.annealing.num_steps=5
       sampler.mcmc.num_steps=1 orientation.elbo_evals=4)           # the path, not the ELBO's cost
  T_TESTS=600 T_PROFILE=300 T_BENCH=600 T_CLI=300
else
  BENCH=(--random-weights --device cuda --steps 10 --mcmc-steps 10)
  PROFILE=(--device cuda)
  CLI=(model=ffhq256ldm sampler=langevin data=demo-ffhq "data.root=$OUT/images" model.ckpt_path=null
       model.random_init_ok=true device=cuda)
  T_TESTS=75 T_PROFILE=60 T_BENCH=60 T_CLI=280
fi

"$PY" - <<'EOF' 2>&1 | tee "$OUT/env.txt"
import importlib, platform, torch
for name in ("hydra", "omegaconf", "piq", "lpips"):
    importlib.import_module(name)
cuda = torch.cuda.is_available()
print(f"python {platform.python_version()}, torch {torch.__version__}, "
      f"device {torch.cuda.get_device_name(0) if cuda else 'cpu'}, cuda {torch.version.cuda if cuda else '-'}")
EOF
[ "${PIPESTATUS[0]}" = 0 ] || { echo "error: a dependency is missing (run --prepare here and carry .pydeps)" >&2; exit 2; }

echo "== CUDA tests (GPU_CHECK_DEVICE=${GPU_CHECK_DEVICE:-cuda})"
timeout "$T_TESTS" "$PY" -m pytest -q -rs -p no:cacheprovider -o addopts="" tests/test_cuda.py 2>&1 | tee "$OUT/cuda_tests.log"
rc_tests=${PIPESTATUS[0]}

echo "== profile of one MCMC gradient: ${PROFILE[*]}"
timeout "$T_PROFILE" "$PY" scripts/performance/profile_gradient.py "${PROFILE[@]}" --variants tf32,bf16 --out "$OUT/profile" \
  > "$OUT/profile.log" 2>&1
rc_profile=$?
[ -f "$OUT/profile.md" ] && grep '^## ' "$OUT/profile.md"

echo "== benchmark: ${BENCH[*]}"
timeout "$T_BENCH" "$PY" scripts/performance/benchmark.py "${BENCH[@]}" --scenarios bcd --variants tf32 --out "$OUT/bench" \
  2>&1 | tee "$OUT/bench.log"
rc_bench=${PIPESTATUS[0]}

echo "== the command line on ${GPU_CHECK_DEVICE:-cuda}: ${CLI[*]}"
rc_cli=0
SECONDS=0
"$PY" - "$OUT/images" <<'EOF' || rc_cli=1
import sys, pathlib
import numpy as np
from PIL import Image
folder = pathlib.Path(sys.argv[1]); folder.mkdir(parents=True, exist_ok=True)
low = np.random.default_rng(0).random((32, 32, 3))   # a smooth random image: the cost does not depend on the content
Image.fromarray((np.kron(low, np.ones((8, 8, 1))) * 255).astype(np.uint8)).save(folder / "00000.png")
EOF
for run in "p4:--particle_num 4" "p4_prune200k2:--particle_num 4 --pruning_step 200 --pruning_keep 2" \
           "p1:--particle_num 1"; do
  name=${run%%:*}; flags=${run#*:}
  left=$((T_CLI - SECONDS)); [ "$left" -gt 5 ] || { echo "no time left for $name"; rc_cli=1; break; }
  # shellcheck disable=SC2086
  timeout "$left" "$PY" posterior_sample.py "${CLI[@]}" $flags --num_eval_images 1 save_images=false \
    "save_dir=$OUT/cli" "name=$name" > "$OUT/cli_$name.log" 2>&1
  [ $? = 0 ] || rc_cli=1
  tail -4 "$OUT/cli_$name.log" | head -1
done
"$PY" - "$OUT" <<'EOF' | tee "$OUT/cli.md"
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
bench = json.loads((out / "bench.json").read_text()) if (out / "bench.json").is_file() else {}
projected = next((p["projected_langevin_s"] for p in bench.get("projections", []) if p["variant"] == "tf32"), None)
print("| run | time per image s | phases: time s / peak MB | decoder VJPs | projected by the benchmark (4 particles) s |")
print("|---|---|---|---|---|")
for name in ("p4", "p4_prune200k2", "p1"):
    path = out / "cli" / name / "metric.json"
    if not path.is_file():
        print(f"| {name} | not run | | | |")
        continue
    im = json.loads(path.read_text())["images"][0]
    phases = "; ".join(f"{k} {v['time_s']:.1f} / {v['peak_memory_mb']:.0f}" for k, v in im["phases"].items())
    proj = f"{projected:.1f}" if projected is not None and name == "p4" else ""
    print(f"| {name} | {im['total_time_s']:.1f} | {phases} | {im['compute']['rows']['decoder_vjp']:.0f} | {proj} |")
EOF

echo "== summary: CUDA tests exit $rc_tests, profile exit $rc_profile, benchmark exit $rc_bench, command line exit $rc_cli; files in $OUT"
[ -f "$OUT/bench.md" ] && sed -n '/^## Throughput/,$p' "$OUT/bench.md"
[ "$rc_tests" = 0 ] && [ "$rc_profile" = 0 ] && [ "$rc_bench" = 0 ] && [ "$rc_cli" = 0 ]
