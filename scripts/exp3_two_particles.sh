#!/usr/bin/env bash
# Experiment 3: 2 particles from the start, repulsion $REPULSION_SCALE (the cost-matched control of experiment 2).
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
EXP=exp3_two_particles
SUMMARY="Experiment 3: exp1's setting (repulsion $REPULSION_SCALE; --like RUN_DIR takes another) with 2 particles from the start, against exp2's 4 -> 2: does starting with two fail more often? (not cost-matched: 2 particles cost about 54 % of exp2)"
DEFAULT_N=1
DEFAULT_DATA=imagenet
SETTINGS=(--particle_num 4 --repulsion_scale "$REPULSION_SCALE" --pruning_step -1 --refine_step -1)
OWN=(--particle_num 2 --pruning_step -1)
NAME_TAGS='p${particle_num}_rep${repulsion_scale}'
exp_main "$@"
