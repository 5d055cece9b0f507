#!/usr/bin/env bash
# The GPU check: the CUDA tests on the tiny LDM, then the short benchmark on the full-size ffhq256ldm with random
# weights (scenarios a-d; fp32, tf32, bf16, bf16 + channels-last; the precision check), all written under $OUT.
# Sized to end within 8 minutes on an H200; each part has its own time limit, and the benchmark saves after
# every variant, so a cut-off run keeps what it measured.
#
#   bash scripts/gpu_check.sh --prepare   # here, after `pip install -r requirements.txt`: copy the pure-Python
#                                         # packages the device lacks into .pydeps/ (git-ignored)
#   bash scripts/gpu_check.sh             # on the device: carry .pydeps; OUT=... names the output folder
#   bash scripts/gpu_check.sh --dry-run   # the same plan on the CPU with the tiny model, in about two minutes
set -uo pipefail
cd "$(dirname "$0")/.."
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
  *) echo "usage: bash scripts/gpu_check.sh [--prepare | --dry-run]" >&2; exit 2 ;;
esac

OUT=${OUT:-results/gpu_check}
mkdir -p "$OUT"
[ -d .pydeps ] && export PYTHONPATH="$PWD/.pydeps${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1

if [ "$mode" = dry ]; then
  export GPU_CHECK_DEVICE=cpu OMP_NUM_THREADS=1
  BENCH=(--tiny --device cpu --threads 1 --steps 10 --mcmc-steps 1 --opt-iters 2)
  T_TESTS=600 T_BENCH=600
else
  BENCH=(--random-weights --device cuda --steps 10 --mcmc-steps 10)
  T_TESTS=120 T_BENCH=330
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

echo "== benchmark: ${BENCH[*]}"
timeout "$T_BENCH" "$PY" scripts/benchmark.py "${BENCH[@]}" --scenarios abcd --variants fp32,tf32,bf16,bf16+cl \
  --precision-check --out "$OUT/bench" 2>&1 | tee "$OUT/bench.log"
rc_bench=${PIPESTATUS[0]}

echo "== summary: CUDA tests exit $rc_tests, benchmark exit $rc_bench; files in $OUT"
[ -f "$OUT/bench.md" ] && sed -n '/^## Throughput/,$p' "$OUT/bench.md"
[ "$rc_tests" = 0 ] && [ "$rc_bench" = 0 ]
