#!/usr/bin/env bash
# Experiment 3: 2 particles from the start, repulsion $REPULSION_SCALE (the cost-matched control of experiment 2).
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
EXP=exp3_two_particles
SUMMARY="Experiment 3: 2 particles from the start, repulsion $REPULSION_SCALE (the cost-matched control of experiment 2)."
DEFAULT_N=1
DEFAULT_DATA=imagenet
SETTINGS=(--particle_num 2 --repulsion_scale "$REPULSION_SCALE" --pruning_step -1 --optimization_step -1)
NAME_TAGS='p${particle_num}_rep${repulsion_scale}'
exp_main "$@"
