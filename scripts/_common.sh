# Shared argument parsing and launch for scripts/exp*.sh (sourced, not run).
# A script sets EXP, SUMMARY, DEFAULT_N, DEFAULT_DATA, SETTINGS (posterior_sample.py flags) and NAME_TAGS
# (Hydra interpolations naming its settings), then calls `exp_main "$@"`.

set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python}"

# The chosen values of the stage flags, shared by the experiments; override by environment or by passing the
# flag through (e.g. `--repulsion_scale 0.2`: the last value wins and the directory name follows it).
# Four independent particles: no interacting configuration met the compute frontier's targets (docs/particle_search.md,
# 2026-12-04: none gave four runs' answers for <= 60 % of their compute, none +10 points at equal compute), so
# repulsion and pruning stay off here; exp1 tries its own strength, exp2 prunes at t = 200 unless PRUNING_STEP says
# otherwise, and PRUNING_STEP=200 (4 -> 2, 8 % less compute, no measurable loss there) turns it on for exp4/exp5.
REPULSION_SCALE="${REPULSION_SCALE:-0}"
PRUNING_STEP="${PRUNING_STEP:--1}"
PRUNING_KEEP="${PRUNING_KEEP:-2}"
OPTIMIZATION_STEP="${OPTIMIZATION_STEP:-200}"
RESAMPLING_INTERVAL="${RESAMPLING_INTERVAL:-5}"   # the study's choice (docs/resampling.md)

usage() {
    cat <<EOF
usage: scripts/$EXP.sh [N] [--data SET[,SET]] [--sampler langevin|hmc] [--start S] [--demo [latent|digits|natural]]
                       [--results DIR] [--dry-run] [-h]
                       [extra posterior_sample.py arguments ...]

$SUMMARY

  N               number of images (default $DEFAULT_N): 1 = sanity, 10 = tuning, 100 = final
  --data SET      test-imagenet | test-ffhq (DAPS's 100-image test sets: compare with published numbers there),
                  imagenet | ffhq (the first N images of a folder: tuning), demo-imagenet | demo-ffhq, or a
                  comma list (default $DEFAULT_DATA)
  --sampler S     langevin (default: the mission's LatentDAPS with Langevin dynamics, not a DAPS-published preset)
                  or hmc (the published LatentDAPS phase-retrieval preset); it names the result folder too
  --start S       first image index, for a shard of a larger run (default 0): images S … S+N-1
  --demo          the embedded two-mode benchmark instead (model=two_mode sampler=two_mode data=two_mode; CPU;
                  20 images); --demo latent: its decoder-constrained twin (model, sampler, data=two_mode_latent);
                  --demo digits: the mini LDM trained on the bundled digits (model=digits32ldm
                  sampler=digits32ldm data=digits; the real LDM code path on a CPU, 297 test images);
                  --demo natural: the mini LDM of bundled photographs (model=naturalldm sampler=naturalldm
                  data=natural; 64 held-out crops, on which independent particles often fail)
  --results DIR   results root (default \$RESULTS_DIR or results/); the run goes to DIR/$EXP/<settings>
  --dry-run       print the posterior_sample.py command(s) without running them
  -h, --help      this text

Every other argument goes to posterior_sample.py after this script's settings, so it wins, e.g.
  scripts/$EXP.sh 10 --repulsion_scale 0.2 sampler.mcmc.num_steps=30 resume=true
  scripts/$EXP.sh 10 --multirun hydra/launcher=slurm data.start_index=0,10,20   (see docs/workflow.md)
Settings: ${SETTINGS[*]}
Environment: PYTHON (interpreter), PARTICLE_NUM (exp4, exp5), REPULSION_SCALE, PRUNING_STEP, PRUNING_KEEP, OPTIMIZATION_STEP,
RESAMPLING_INTERVAL.
EOF
}

quote() {  # an argument as the shell would need it typed: bare when safe, else in single quotes
    if [[ "$1" =~ ^[A-Za-z0-9_./=:,+@%-]+$ ]]; then printf '%s' "$1"; else printf "'%s'" "${1//\'/\'\\\'\'}"; fi
}

die() {
    echo "error: $*  (scripts/$EXP.sh -h for usage)" >&2
    exit 2
}

exp_main() {
    local n="" start=0 data="$DEFAULT_DATA" sampler=langevin demo=0 dry=0 results="${RESULTS_DIR:-results}" multirun=0
    local extra=() pending=0 data_given=0
    while [[ $# -gt 0 ]]; do
        case "$1" in
            -h|--help) usage; exit 0 ;;
            --demo)
                demo=1
                if [[ "${2:-}" == latent || "${2:-}" == digits || "${2:-}" == natural || "${2:-}" == two_mode ]]; then
                    [[ "$2" != two_mode ]] && demo="$2"
                    shift
                elif [[ -n "${2:-}" && "${2:-}" != -* && "${2:-}" != *=* && ! "${2:-}" =~ ^[0-9]+$ ]]; then
                    die "--demo takes latent, digits or natural (nothing: the two-mode benchmark), got '$2'"
                fi ;;
            --demo=latent|--demo=digits|--demo=natural) demo="${1#*=}" ;;
            --demo=two_mode) demo=1 ;;
            --demo=*) die "--demo takes latent, digits or natural (nothing: the two-mode benchmark), got '${1#*=}'" ;;
            --dry-run) dry=1 ;;
            --data|--start|--results|--sampler)
                [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a value"
                case "$1" in --data) data="$2"; data_given=1 ;; --start) start="$2" ;; --results) results="$2" ;;
                             --sampler) sampler="$2" ;; esac
                shift ;;
            --data=*) data="${1#*=}"; data_given=1 ;;
            --sampler=*) sampler="${1#*=}" ;;
            --start=*) start="${1#*=}" ;;
            --results=*) results="${1#*=}" ;;
            --) shift; extra+=("$@"); break ;;
            *)
                # Hydra's parser takes --multirun only before or after all overrides: it goes first below
                if [[ "$1" == "-m" || "$1" == "--multirun" ]]; then multirun=1; shift; continue; fi
                # the first bare word is N, unless it is the value of a pass-through `--flag value`
                if [[ $pending -eq 0 && -z "$n" && "$1" != -* && "$1" != *=* ]]; then
                    n="$1"
                else
                    extra+=("$1")
                    pending=0
                    if [[ "$1" == --* && "$1" != *=* ]]; then pending=1; fi
                fi ;;
        esac
        shift
    done
    n="${n:-$DEFAULT_N}"
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "N (the number of images) must be a positive integer, got '$n'"
    [[ "$start" =~ ^[0-9]+$ ]] || die "--start must be an integer >= 0, got '$start'"
    [[ "$sampler" == langevin || "$sampler" == hmc ]] || die "--sampler must be langevin or hmc, got '$sampler'"
    [[ $demo == 0 || $data_given == 0 ]] || die "--demo runs on its own data: leave out --data $data (or --demo)"

    # one run per data set; --demo replaces them all by the benchmark
    local sets=() set
    IFS=',' read -r -a sets <<< "$data"
    [[ ${#sets[@]} -gt 0 ]] || die "--data is empty"
    for set in "${sets[@]}"; do
        case "$set" in test-imagenet|test-ffhq|imagenet|ffhq|demo-imagenet|demo-ffhq) ;; *)
            die "--data $set is not one of test-imagenet, test-ffhq, imagenet, ffhq, demo-imagenet, demo-ffhq" ;;
        esac
    done
    # the LDM runs' folder names say which sampler ran; the benchmark has one
    local tag="${sampler}_"
    [[ $demo == 1 ]] && sets=(two_mode) && tag=""
    [[ $demo == latent ]] && sets=(two_mode_latent) && tag=""
    [[ $demo == digits ]] && sets=(digits) && tag=""
    [[ $demo == natural ]] && sets=(natural) && tag=""

    [[ "$results" = /* ]] || results="$PWD/$results"
    local save_dir="$results/$EXP"
    # the directory name is built by Hydra from the resolved config, so a pass-through flag or a --multirun
    # sweep over any named setting gets its own directory; other sweeps are told apart by the job number
    local name="\${data.name}_${tag}${NAME_TAGS}_n\${num_eval_images}_s\${data.start_index}"
    [[ $multirun -eq 1 ]] && name="${name}_job\${hydra:job.num}"

    cd "$REPO_ROOT"
    for set in "${sets[@]}"; do
        local stack=()
        case "$set" in
            two_mode|two_mode_latent) stack=("model=$set" "sampler=$set" "data=$set") ;;
            digits) stack=(model=digits32ldm sampler=digits32ldm data=digits) ;;
            natural) stack=(model=naturalldm sampler=naturalldm data=natural) ;;
            *imagenet) stack=(model=imagenet256ldm "sampler=$sampler" "data=$set") ;;
            *ffhq) stack=(model=ffhq256ldm "sampler=$sampler" "data=$set") ;;
        esac
        local cmd=("$PYTHON" posterior_sample.py)
        [[ $multirun -eq 1 ]] && cmd+=(--multirun)
        cmd+=("${stack[@]}" "${SETTINGS[@]}" --num_eval_images "$n" "data.start_index=$start"
              "save_dir=$save_dir" "name=$name" "hydra.sweep.dir=$save_dir" "hydra.sweep.subdir=\${name}"
              ${extra[@]+"${extra[@]}"})
        { printf '+'; for arg in "${cmd[@]}"; do printf ' %s' "$(quote "$arg")"; done; echo; } >&2
        [[ $dry -eq 1 ]] || "${cmd[@]}"
    done
    [[ $dry -eq 1 ]] || echo "compare with: $PYTHON parse_metrics.py $save_dir [--out DIR]" >&2
}
