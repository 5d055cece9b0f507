#!/usr/bin/env bash
# Experiment 0, baseline: 4 independent particles, no repulsion, no pruning, no optimisation (= DAPS's protocol of 4 independent runs, as one batch).
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
EXP=exp0_baseline
SUMMARY="Experiment 0, baseline: 4 independent particles, no repulsion, no pruning, no optimisation (= DAPS's protocol of 4 independent runs, as one batch)."
DEFAULT_N=1
DEFAULT_DATA=test-imagenet
SETTINGS=(--particle_num 4 --repulsion_scale 0 --pruning_step -1 --refine_step -1)
NAME_TAGS='p${particle_num}'
exp_main "$@"
