#!/usr/bin/env bash
# Experiment 5: the chosen setting on DAPS's 100-image ImageNet and FFHQ test sets: the chosen particles (four
# independent ones by default: docs/particle_search.md), with refinement OFF: no refine variant raised PSNR on the decoder-constrained benchmark
# (docs/refine.md); pass --refine_step 200 to run it anyway.
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
EXP=exp5_final
SUMMARY="Experiment 5: the setting it is given (--like RUN_DIR; default four independent particles) on DAPS's 100-image ImageNet and FFHQ test sets, then its ablation (without pruning, without optimisation, DAPS's four independent runs) and a paired table of what each gave."
DEFAULT_N=100
DEFAULT_DATA=test-imagenet,test-ffhq
SETTINGS=(--particle_num "${PARTICLE_NUM:-4}" --repulsion_scale 0 --pruning_step "$PRUNING_STEP" --pruning_keep "$PRUNING_KEEP" --refine_step -1)
ABLATE=1
NAME_TAGS='p${particle_num}_rep${repulsion_scale}_prune${pruning_step}k${pruning_keep}_refine${refine_step}'
exp_main "$@"
