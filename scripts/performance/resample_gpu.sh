#!/usr/bin/env bash
# ReSample against LatentDAPS at full size on one image (ffhq256ldm, random weights: they cost what real ones do):
# LatentDAPS with 4 particles (the published HMC preset), ReSample at 500 DDIM steps with 1 and 4 runs in one batch;
# time per image, peak step memory, network rows and TFLOP from each run's metric.json, a table in $OUT/resample.md.
# Each run has its own time limit and the table reads whatever finished.
#
#   bash scripts/performance/gpu_check.sh --prepare        # here: .pydeps for the device (carry it)
#   bash scripts/performance/resample_gpu.sh               # on the device; OUT=... names the output folder
#   bash scripts/performance/resample_gpu.sh --dry-run     # the same on the CPU with the digits mini LDM, few steps
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
OUT=${OUT:-results/resample_gpu}
mkdir -p "$OUT"
. scripts/performance/_device.sh             # this checkout and .pydeps on PYTHONPATH
if [ "${1:-}" = --dry-run ]; then
  export OMP_NUM_THREADS=1
  COMMON=(model=digits32ldm data=digits device=cpu)
  DAPS=(sampler=digits32ldm sampler.annealing.num_steps=5 sampler.mcmc.num_steps=1)
  RESAMPLE=(sampler=digits32ldm_resample sampler.resample.num_steps=20 sampler.resample.latent_opt.max_iters=5
            sampler.resample.pixel_opt.max_iters=5)
  LIMITS=(120 120 120)
else
  "$PY" - "$OUT/images" <<'PYEOF'
import sys, pathlib
import numpy as np
from PIL import Image
folder = pathlib.Path(sys.argv[1]); folder.mkdir(parents=True, exist_ok=True)
low = np.random.default_rng(0).random((32, 32, 3))   # a smooth random image: the cost does not depend on the content
Image.fromarray((np.kron(low, np.ones((8, 8, 1))) * 255).astype(np.uint8)).save(folder / "00000.png")
PYEOF
  COMMON=(model=ffhq256ldm data=demo-ffhq "data.root=$OUT/images" model.ckpt_path=null model.random_init_ok=true
          device=cuda)
  DAPS=(sampler=hmc)
  RESAMPLE=(sampler=resample)
  LIMITS=(120 240 300)
fi
i=0
for run in "latentdaps_p4:particle_num=4 ${DAPS[*]}" "resample_p1:particle_num=1 ${RESAMPLE[*]}" \
           "resample_p4:particle_num=4 ${RESAMPLE[*]}"; do
  name=${run%%:*}; flags=${run#*:}
  echo "== $name: $flags"
  # shellcheck disable=SC2086
  timeout "${LIMITS[$i]}" "$PY" posterior_sample.py "${COMMON[@]}" $flags num_eval_images=1 save_images=false \
    "save_dir=$OUT/cli" "name=$name" > "$OUT/$name.log" 2>&1 || echo "$name: exit $? (see $OUT/$name.log)"
  i=$((i + 1))
done
"$PY" - "$OUT" <<'PYEOF' | tee "$OUT/resample.md"
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
print("| run | device | time per image s | peak step memory MB | UNet rows (VJP) | decoder VJPs | TFLOP | phases s |")
print("|---|---|---|---|---|---|---|---|")
for name in ("latentdaps_p4", "resample_p1", "resample_p4"):
    path = out / "cli" / name / "metric.json"
    if not path.is_file():
        print(f"| {name} | not finished | | | | | | |")
        continue
    m = json.loads(path.read_text())
    im = m["images"][0]
    rows = im["compute"]["rows"]
    peak = max(st["memory_mb"] for st in im["steps"])
    phases = "; ".join(f"{k} {v['time_s']:.1f}" for k, v in im["phases"].items())
    print(f"| {name} | {m['provenance']['device']} | {im['total_time_s']:.1f} | {peak:.0f} | {rows['unet']:.0f} "
          f"({rows.get('unet_vjp', 0):.0f}) | {rows['decoder_vjp']:.0f} | {im['compute']['tflop']:.1f} | {phases} |")
PYEOF
