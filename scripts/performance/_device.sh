# Sourced by the device scripts (gpu_check.sh, resample_gpu.sh, studies/gpu_study.sh): the device machine has no
# package index and no install of this tool, so this checkout and the packages carried in .pydeps (gpu_check.sh
# --prepare) go on PYTHONPATH; output unbuffered, no bytecode written into the copied tree.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
[ -d .pydeps ] && export PYTHONPATH="$PWD/.pydeps:$PYTHONPATH"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
