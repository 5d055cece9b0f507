#!/usr/bin/env bash
# The frontier study on a GPU: the mini LDMs' six configurations (scripts/study_frontier.py, power set) with at
# least 1,000 measurements each (natural: 64 crops x 16 seeds; digits: 100 digits x 10 seeds), then their reports,
# all under $OUT. Sized to end within 8 minutes on an H200: each model has its own time limit, every finished shard
# is kept (a cut-off run reports what finished, and the same command continues it).
#
#   bash scripts/performance/gpu_check.sh --prepare   # here: copy the pure-Python packages the device lacks into .pydeps/
#   bash scripts/studies/gpu_study.sh             # on the device: carry .pydeps; OUT=... names the output folder
#   bash scripts/studies/gpu_study.sh --dry-run   # the same plan on the CPU, scaled down: the natural model only, 2 images
#                                         # x 1 seed, 5 annealing steps, one worker
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}

OUT=${OUT:-results/gpu_study}
mkdir -p "$OUT"
. scripts/performance/_device.sh             # this checkout and .pydeps on PYTHONPATH

case "${1:-}" in
  --dry-run)
    export OMP_NUM_THREADS=1
    NATURAL=(--device cpu --images 2 --seeds 0 --shard 2 --workers 1 sampler.annealing.num_steps=5
             sampler.mcmc.num_steps=1 orientation.elbo_evals=4)   # the plumbing, not the ELBO
    MODELS=(naturalldm)
    T_NATURAL=300 ;;
  "")
    # one batch per job (every image of one seed), four workers sharing the GPU
    NATURAL=(--device cuda --seeds $(seq 0 15) --shard 64 --images-per-batch 64 --workers 4)
    DIGITS=(--device cuda --seeds $(seq 0 9) --shard 100 --images-per-batch 100 --workers 4)
    MODELS=(naturalldm digits32ldm)
    T_NATURAL=270 T_DIGITS=150 ;;
  *) echo "usage: bash scripts/studies/gpu_study.sh [--dry-run]" >&2; exit 2 ;;
esac

"$PY" -c 'import hydra, omegaconf, piq, submitit, torch; print("torch", torch.__version__, "cuda",
torch.cuda.is_available())' 2>&1 | tee "$OUT/env.txt"
[ "${PIPESTATUS[0]}" = 0 ] || { echo "error: a dependency is missing (run gpu_check.sh --prepare here and carry .pydeps)" >&2; exit 2; }

# the six particle configurations (ReSample's baseline, the power set's seventh, is timed by
# scripts/performance/resample_gpu.sh: its own budget)
SIX=(--only "4 independent" "2 independent" "4 -> 2 pruned at t=200" "4 repulsive 0.3 (score-relative)"
     "4 Particle Guidance 3e5" "8 -> 4 -> 2 -> 1 halving at t=600,400,200")
rc=0
for model in "${MODELS[@]}"; do
  if [ "$model" = naturalldm ]; then args=("${NATURAL[@]}"); limit=$T_NATURAL; else args=("${DIGITS[@]}"); limit=$T_DIGITS; fi
  args+=("${SIX[@]}")
  echo "== $model: ${args[*]}"
  timeout "$limit" "$PY" scripts/study_frontier.py --model "$model" --out "$OUT/$model" run --yes "${args[@]}" \
    2>&1 | tee "$OUT/$model.log"
  [ "${PIPESTATUS[0]}" = 0 ] || rc=1
  pkill -f "submitit.local._local $PWD/$OUT/$model" 2>/dev/null      # workers a time limit left behind
  "$PY" scripts/study_frontier.py --model "$model" --out "$OUT/$model" report --save "$OUT/$model.json" \
    --plot "$OUT/$model.png" "${args[@]}" > "$OUT/$model.report.md" 2>> "$OUT/$model.log" || rc=1
  sed -n '/^The comparisons/,/^$/p;/^| comparison/,/^$/p' "$OUT/$model.report.md"
done
echo "== done (exit $rc); files in $OUT"
exit $rc
