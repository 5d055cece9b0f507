#!/usr/bin/env bash
# Experiment 4: the best setting of experiments 1-3 (default: 4 independent particles, the compute frontier's verdict; REPULSION_SCALE, PRUNING_STEP change it) plus latent optimisation from t = $REFINE_STEP with the refine block's defaults (eps auto, stochastic resample: the best variant of docs/refine.md).
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
EXP=exp4_optimization
SUMMARY="Experiment 4: the setting it is given (--like RUN_DIR: the best of experiments 1-3; default four independent particles, the frontier's verdict) plus latent optimisation from t = $REFINE_STEP, each particle stopped on its own."
DEFAULT_N=1
DEFAULT_DATA=imagenet
SETTINGS=(--particle_num "${PARTICLE_NUM:-4}" --repulsion_scale 0 --pruning_step "$PRUNING_STEP" --pruning_keep "$PRUNING_KEEP" --refine_step -1)
OWN=(--refine_step "$REFINE_STEP")
NAME_TAGS='p${particle_num}_rep${repulsion_scale}_prune${pruning_step}k${pruning_keep}_refine${refine_step}'
exp_main "$@"
