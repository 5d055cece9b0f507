#!/usr/bin/env bash
# Experiment 6: 4 particles with loss-guided resampling every $RESAMPLING_INTERVAL steps of the window (Feynman-Kac steering).
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
EXP=exp6_resampling
SUMMARY="Experiment 6: 4 particles with loss-guided resampling every $RESAMPLING_INTERVAL annealing steps of the window (docs/resampling.md); compare with exp0 at the same compute."
DEFAULT_N=1
DEFAULT_DATA=imagenet
SETTINGS=(--particle_num 4 --repulsion_scale 0 --resampling_interval "$RESAMPLING_INTERVAL" --pruning_step -1 --refine_step -1)
NAME_TAGS='p${particle_num}_rs${resampling_interval}'
exp_main "$@"
