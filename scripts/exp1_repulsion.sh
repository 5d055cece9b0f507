#!/usr/bin/env bash
# Experiment 1: 4 particles with repulsion while exploring (strength $REPULSION_SCALE, decaying to 0).
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
EXP=exp1_repulsion
SUMMARY="Experiment 1: 4 particles with repulsion while exploring (strength $REPULSION_SCALE, decaying to 0)."
DEFAULT_N=1
DEFAULT_DATA=imagenet
SETTINGS=(--particle_num 4 --repulsion_scale "$REPULSION_SCALE" --pruning_step -1 --optimization_step -1)
NAME_TAGS='p${particle_num}_rep${repulsion_scale}'
exp_main "$@"
