#!/usr/bin/env bash
# Experiment 2: 4 particles (repulsion $REPULSION_SCALE), pruned to $PRUNING_KEEP at t = $PRUNING_STEP.
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
EXP2_STEP="$PRUNING_STEP"; [[ "$EXP2_STEP" == -1 ]] && EXP2_STEP=200      # the experiment prunes: t = 200 unless told
EXP=exp2_pruning
SUMMARY="Experiment 2: exp1's setting (4 particles, repulsion $REPULSION_SCALE; --like RUN_DIR takes another), pruned to $PRUNING_KEEP at t = $EXP2_STEP: the same answers for less time and memory?"
DEFAULT_N=1
DEFAULT_DATA=imagenet
SETTINGS=(--particle_num 4 --repulsion_scale "$REPULSION_SCALE" --pruning_step -1 --refine_step -1)
OWN=(--pruning_step "$EXP2_STEP" --pruning_keep "$PRUNING_KEEP")
NAME_TAGS='p${particle_num}_rep${repulsion_scale}_prune${pruning_step}k${pruning_keep}'
exp_main "$@"
