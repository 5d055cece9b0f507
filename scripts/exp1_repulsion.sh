#!/usr/bin/env bash
# Experiment 1: 4 particles with repulsion while exploring (strength 0.3 score-relative, decaying to 0; pass --repulsion_scale to try another).
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
EXP=exp1_repulsion
SUMMARY="Experiment 1: 4 particles with repulsion while exploring (strength \$REPULSION_SCALE = $REPULSION_SCALE score-relative, decaying to 0), against exp0's independent ones; exp2 and exp3 build on this setting."
DEFAULT_N=1
DEFAULT_DATA=imagenet
SETTINGS=(--particle_num 4 --repulsion_scale "$REPULSION_SCALE" --pruning_step -1 --refine_step -1)
NAME_TAGS='p${particle_num}_rep${repulsion_scale}'
exp_main "$@"
