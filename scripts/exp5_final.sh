#!/usr/bin/env bash
# Experiment 5: the chosen setting (that of experiment 4, same environment variables) on DAPS's 100-image ImageNet and FFHQ test sets.
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
EXP=exp5_final
SUMMARY="Experiment 5: the chosen setting (that of experiment 4, same environment variables) on DAPS's 100-image ImageNet and FFHQ test sets."
DEFAULT_N=100
DEFAULT_DATA=test-imagenet,test-ffhq
SETTINGS=(--particle_num "${PARTICLE_NUM:-4}" --repulsion_scale "$REPULSION_SCALE" --pruning_step "$PRUNING_STEP" --pruning_keep "$PRUNING_KEEP" --optimization_step "$OPTIMIZATION_STEP")
NAME_TAGS='p${particle_num}_rep${repulsion_scale}_prune${pruning_step}k${pruning_keep}_opt${optimization_step}'
exp_main "$@"
