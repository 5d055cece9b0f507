# Shared argument parsing and launch for scripts/exp*.sh (sourced, not run).
# A script sets EXP, SUMMARY, DEFAULT_N, DEFAULT_DATA, SETTINGS (the setting it builds on, as posterior_sample.py
# flags: `--like RUN_DIR` replaces it by that run's particles and stages), OWN (the flags that make the experiment,
# applied after SETTINGS and --like), ABLATE (1: also run the setting without pruning, without optimisation and as
# four independent particles, and print the paired table) and NAME_TAGS (Hydra interpolations naming its settings), then calls `exp_main "$@"`.

set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python}"

# The experiments chain as the plan does: exp1 is four particles with repulsion (REPULSION_SCALE, default 0.3, the
# strength under test); exp2 prunes exp1's setting 4 -> 2 at t = 200 and exp3 starts it with 2 particles, unless
# told otherwise (--like RUN_DIR, or the flags themselves); exp4 refines the setting it is given (--like RUN_DIR: the
# best of exp1-3), exp5 runs the setting it is given on the final images with its ablation. Their default is four
# independent particles: no interacting configuration met the frontier study's targets (docs/particle_search.md).
# Any flag passed through wins (e.g. `--repulsion_scale 0.2`: the last value wins and the directory name follows it).
REPULSION_SCALE="${REPULSION_SCALE:-0.3}"
PRUNING_STEP="${PRUNING_STEP:--1}"
PRUNING_KEEP="${PRUNING_KEEP:-2}"
REFINE_STEP="${REFINE_STEP:-${OPTIMIZATION_STEP:-200}}"     # OPTIMIZATION_STEP: its name before the rename
RESAMPLING_INTERVAL="${RESAMPLING_INTERVAL:-5}"   # the study's choice (docs/resampling.md)

usage() {
    cat <<EOF
usage: scripts/$EXP.sh [N] [--data SET[,SET]] [--sampler langevin|hmc] [--start S] [--demo [latent|digits|natural]]
                       [--like RUN_DIR] [--results DIR] [--dry-run] [-h]
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
  --like RUN_DIR  build on that run's setting (its particles and stages, from its config.yaml) instead of
                  ${SETTINGS[*]}
  --results DIR   results root (default \$RESULTS_DIR or results/); the run goes to DIR/$EXP/<settings>
  --dry-run       print the posterior_sample.py command(s) without running them
  -h, --help      this text

Every other argument goes to posterior_sample.py after this script's settings, so it wins, e.g.
  scripts/$EXP.sh 10 --repulsion_scale 0.2 sampler.mcmc.num_steps=30 resume=true
  scripts/$EXP.sh 10 --multirun hydra/launcher=slurm data.start_index=0,10,20   (see docs/workflow.md)
Settings: ${SETTINGS[*]} ${OWN[*]+${OWN[*]}}
Environment: PYTHON (interpreter), PARTICLE_NUM (exp4, exp5), REPULSION_SCALE (exp1-3), PRUNING_STEP, PRUNING_KEEP,
REFINE_STEP, RESAMPLING_INTERVAL.
EOF
}

quote() {  # an argument as the shell would need it typed: bare when safe, else in single quotes
    if [[ "$1" =~ ^[A-Za-z0-9_./=:,+@%-]+$ ]]; then printf '%s' "$1"; else printf "'%s'" "${1//\'/\'\\\'\'}"; fi
}

like_overrides() {  # the particle and stage settings of the run in $1 (its config.yaml), one override per line
    "$PYTHON" - "$1" <<'PY' || exit 2
import json, sys
from pathlib import Path
import yaml
run = Path(sys.argv[1])
path = next((p for p in (run / "config.yaml", run) if p.is_file()), None)
if path is None:
    sys.exit(f"error: --like {run}: no config.yaml there (a run folder holds one)")
cfg = yaml.safe_load(path.read_text())
cfg = {{"optimization_step": "refine_step", "optimization": "refine"}.get(k, k): v for k, v in cfg.items()}  # a run made before the rename
flags = ("particle_num", "repulsion_scale", "resampling_interval", "pruning_step", "pruning_keep", "refine_step")
blocks = ("repulsion", "resampling", "pruning", "refine")
show = lambda v: "null" if v is None else json.dumps(v).replace(" ", "") if isinstance(v, list) else str(v).lower() if isinstance(v, bool) else str(v)
for k in flags:
    print(f"{k}={show(cfg[k])}")
for b in blocks:
    for k, v in (cfg.get(b) or {}).items():
        print(f"{b}.{k}={show(v)}")
PY
}

die() {
    echo "error: $*  (scripts/$EXP.sh -h for usage)" >&2
    exit 2
}

exp_main() {
    local n="" start=0 data="$DEFAULT_DATA" sampler=langevin demo=0 dry=0 results="${RESULTS_DIR:-results}" multirun=0
    local extra=() pending=0 data_given=0 like=""
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
            --data|--start|--results|--sampler|--like)
                [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a value"
                case "$1" in --data) data="$2"; data_given=1 ;; --start) start="$2" ;; --results) results="$2" ;;
                             --sampler) sampler="$2" ;; --like) like="$2" ;; esac
                shift ;;
            --like=*) like="${1#*=}" ;;
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

    local base=("${SETTINGS[@]}")
    if [[ -n "$like" ]]; then
        local likes
        likes="$(like_overrides "$like")" || exit 2
        mapfile -t base <<< "$likes"
    fi

    [[ "$results" = /* ]] || results="$PWD/$results"
    local save_dir="$results/$EXP"
    # the directory name is built by Hydra from the resolved config, so a pass-through flag or a --multirun
    # sweep over any named setting gets its own directory; other sweeps are told apart by the job number
    local name="\${data.name}_${tag}${NAME_TAGS}_n\${num_eval_images}_s\${data.start_index}"
    [[ $multirun -eq 1 ]] && name="${name}_job\${hydra:job.num}"

    cd "$REPO_ROOT"
    for set in "${sets[@]}"; do
        local stack=()
        # the model and sampler this data set runs with: each model config's goes_with line (pipeline/stacks.py)
        mapfile -t stack < <("$PYTHON" -m pipeline.stacks --data "$set" --sampler "$sampler") || exit 2
        local cmd=("$PYTHON" posterior_sample.py)
        [[ $multirun -eq 1 ]] && cmd+=(--multirun)
        cmd+=("${stack[@]}" "${base[@]}" ${OWN[@]+"${OWN[@]}"} --num_eval_images "$n" "data.start_index=$start"
              "save_dir=$save_dir" "name=$name" "hydra.sweep.dir=$save_dir" "hydra.sweep.subdir=\${name}"
              ${extra[@]+"${extra[@]}"})
        local variants=("") runs=() variant
        # the ablation: the same setting without pruning, without optimisation, and DAPS's four independent runs (a
        # variant equal to the setting names the same folder and is continued, not redone)
        [[ "${ABLATE:-0}" == 1 && $multirun -eq 0 ]] && variants+=("--pruning_step=-1" "--refine_step=-1"
            "--particle_num=4 --repulsion_scale=0 --resampling_interval=0 --pruning_step=-1 --refine_step=-1")
        for variant in "${variants[@]}"; do
            local run=("${cmd[@]}") extra
            read -r -a extra <<< "$variant"
            run+=("${extra[@]}")
            { printf '+'; for arg in "${run[@]}"; do printf ' %s' "$(quote "$arg")"; done; echo; } >&2
            [[ $dry -eq 1 ]] && continue
            if [[ ${#variants[@]} -eq 1 ]]; then "${run[@]}"; continue; fi
            local log
            log="$(mktemp)"
            "${run[@]}" | tee "$log" || exit $?
            runs+=("$(sed -n 's/^results: //p' "$log" | tail -1)")
            rm -f "$log"
        done
        if [[ ${#variants[@]} -gt 1 && $dry -eq 0 ]]; then
            local distinct=()
            mapfile -t distinct < <(printf '%s\n' "${runs[@]}" | awk '!seen[$0]++')
            if [[ ${#distinct[@]} -gt 1 ]]; then
                echo "== $set: what pruning and optimisation gave (the setting against each ablation, paired)"
                "$PYTHON" parse_metrics.py "${distinct[@]:1}" --reference "${distinct[0]}" | sed -n '/^Paired against/,$p'
            else
                echo "== $set: the setting is four independent particles: nothing to ablate"
            fi
        fi
    done
    [[ $dry -eq 1 ]] || echo "compare with: $PYTHON parse_metrics.py $save_dir [--out DIR]" >&2
}
