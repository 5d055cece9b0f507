"""Aggregate per-image records of metric.json into the run's summary block."""
from __future__ import annotations

import statistics

from evaluation.failures import kind_shares
from evaluation.trajectory import commit_times
from evaluation.trust import shares as trust_shares
from stages import ordered


def _mean(values):
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def _std(values):
    values = [v for v in values if v is not None]
    return statistics.pstdev(values) if len(values) > 1 else (0.0 if values else None)


def _rows(image: dict, network: str):
    return image.get("compute", {}).get("rows", {}).get(network)


CURVE_N = (1, 2, 4, 8)


def _sym(particle: dict) -> float:
    """A particle's PSNR up to the symmetries (class_psnr; its plain PSNR in records older than the classes)."""
    return particle.get("class_psnr", particle["psnr"])


def both_modes_expected(image: dict) -> float | None:
    """The chance that the image's n final particles, drawn independently from the exact posterior, hold both
    orientations: 1 - w0^n - w180^n (None where the model has no exact mode weights)."""
    w = image.get("mode_weights")
    if not w:
        return None
    n = sum(p.get("pruned_at") is None for p in image["particles"])
    return 1 - w["0"] ** n - w["180"] ** n


def explore_spread(image: dict) -> float | None:
    """The image's particle spread while they explore: the mean pairwise latent distance between its particles,
    averaged over the explore phase's steps (None without step records or with fewer than two particles)."""
    values = [st["mean_pairwise_distance"] for st in image.get("steps", [])
              if st.get("phase") == "explore" and st.get("mean_pairwise_distance") is not None]
    return sum(values) / len(values) if values else None


def step_memory_peak(image: dict) -> float | None:
    """The largest memory of any of the image's steps (tracking/tracker.py: each step's own figure), else the
    largest phase peak; None where neither was recorded."""
    values = [st["memory_mb"] for st in image.get("steps", []) if st.get("memory_mb") is not None]
    values = values or [ph["peak_memory_mb"] for ph in (image.get("phases") or {}).values()
                        if ph.get("peak_memory_mb") is not None]
    return max(values) if values else None


def summarize(images: list[dict]) -> dict:
    """Means over images of the per-image numbers, and rates of mode outcomes. Modes are up to the measurement's
    symmetries (rotation, and shifts where the background is the padding's value): a particle is a success when
    it is any member of the ground truth's equivalence class."""
    if not images:
        return {"images": 0}
    finals = [[p for p in im["particles"] if p.get("pruned_at") is None] for im in images]
    phases = list(dict.fromkeys(ph for im in images for ph in im["phases"]))      # in the order they ran
    dap = [im["best_of_n"] for im in images]
    best = [im["best_oracle"] for im in images]
    chosen = [im["best_by_loss"] for im in images]
    all_final = [p for ps in finals for p in ps]
    commits = [t for im in images for t in commit_times(im).values()]
    p = _mean([float(q["mode"] != "fail") for q in all_final])
    return {
        "images": len(images),
        "particles": _mean([len(ps) for ps in finals]),
        # the headline, no ground truth needed to get it: the particle the tool chooses (lowest loss or highest
        # estimated log-posterior, orientation.choose), oriented by the prior, is the image (up to a shift)
        "prior_success_rate": _mean([float(im["best_by_prior"]["mode"] == "0") for im in images]),
        "prior_choice_psnr_mean": _mean([im["best_by_prior"]["psnr"] for im in images]),
        "prior_choice_psnr_shift_mean": _mean([im["best_by_prior"].get("psnr_shift") for im in images]),
        "choice_success_rate": {rule: _mean([float(im["choices"][rule]["mode"] == "0") for im in images
                                             if "choices" in im]) for rule in ("loss", "posterior")},
        # the search: some final particle is in the class (any orientation, any shift)
        "search_success_rate": _mean([float(any(q["mode"] != "fail" for q in ps)) for ps in finals]),
        "loss_choice_in_class_rate": _mean([float(c["mode"] != "fail") for c in chosen]),
        # per-particle success p, and what N independent particles of that p would give: 1 - (1 - p)^N
        "particle_success_rate": p,
        "independent_success_curve": None if p is None else {str(n): 1 - (1 - p) ** n for n in CURVE_N},
        # best-of-N as DAPS's eval.py: per image the max PSNR, max SSIM and min LPIPS over all final particles
        # (failed ones included), each chosen on its own; mean and std over images
        **{f"best_of_n_{m}_{stat}": f([d[m] for d in dap]) for m in ("psnr", "ssim", "lpips")
           for stat, f in (("mean", _mean), ("std", _std))},
        # the particle with the max PSNR, its own SSIM and LPIPS
        "oracle_psnr_mean": _mean([b["psnr"] for b in best]),
        "oracle_ssim_mean": _mean([b["ssim"] for b in best]),
        "oracle_lpips_mean": _mean([b["lpips"] for b in best]),
        "mean_psnr": _mean([p["psnr"] for p in all_final]),
        "particle_psnr_std": _mean([_std([p["psnr"] for p in ps]) for ps in finals]),
        # up to the measurement's symmetries: each particle against the closest member of the truth's class (its
        # rotation, shifts), so a particle that found the 180° mode is not a failure and flips add no spread
        "best_psnr_sym_mean": _mean([max(_sym(q) for q in ps) for ps in finals]),
        "best_psnr_sym_std": _std([max(_sym(q) for q in ps) for ps in finals]),
        "particle_psnr_sym_std": _mean([_std([_sym(q) for q in ps]) for ps in finals]),
        # mode coverage: each mode's share of the final particles
        "mode_shares": {m: _mean([float(q["mode"] == m) for q in all_final])
                        for m in images[0].get("modes", ("0", "180", "fail"))},
        "chosen_psnr_mean": _mean([c["psnr"] for c in chosen]),
        # the lowest-loss particle as sampled (a coin flip between orientations where the prior has no say)
        "loss_choice_gt_rate": _mean([float(c["mode"] == "0") for c in chosen]),
        # an oracle over orientation: some particle is in the upright mode (shifts included)
        "success_rate": _mean([float(im["gt_mode_found"]) for im in images]),
        # diagnostic: both orientations among the final particles, and where the model knows the exact mode weights,
        # how often independent exact posterior samples would hold both
        "both_modes_rate": _mean([None if im["both_modes"] is None else float(im["both_modes"]) for im in images]),
        "both_modes_expected_rate": _mean([both_modes_expected(im) for im in images]),
        "fail_rate": _mean([float(p["mode"] == "fail") for p in all_final]),
        # why the final particles failed (evaluation/failures.py), each kind's share of all final particles
        "failure_kinds": kind_shares(all_final),
        # the images the model can make at all (its first stage's reconstruction fits y within the noise); None for a
        # model without a first stage
        "representable_rate": _mean([float(im["representability"]["representable"]) for im in images
                                     if im.get("representability")]),
        # how far to trust the answers (evaluation/trust.py), each label's share of the images
        "trust_shares": trust_shares(images),
        "time_s_per_image": _mean([im["total_time_s"] for im in images]),
        # the sampler's network rows and TFLOP by the cost model (tracking/compute.py), per image
        "decoder_vjp_rows_per_image": _mean([_rows(im, "decoder_vjp") for im in images]),
        "unet_rows_per_image": _mean([_rows(im, "unet") for im in images]),
        "unet_vjp_rows_per_image": _mean([_rows(im, "unet_vjp") for im in images]),
        # ReSample's own: its optimisation steps (all its particles' AdamW steps) and their time, per image
        "resample_iterations_per_image": _mean([sum(im["resample"]["iterations_per_particle"].values())
                                                if "resample" in im else None for im in images]),
        "resample_optimisation_time_s_per_image": _mean([im["resample"]["optimisation_time_s"] if "resample" in im
                                                         else None for im in images]),
        "tflop_per_image": _mean([im.get("compute", {}).get("tflop") for im in images]),
        "phase_time_s": {ph: _mean([im["phases"].get(ph, {}).get("time_s") for im in images]) for ph in phases},
        # cuda_max_allocated: the GPU's peak per phase; peak_rss: the CPU process's lifetime peak (not per phase)
        "memory_kind": next((ph.get("memory_kind") for im in images for ph in im["phases"].values()), None),
        "phase_peak_memory_mb": {ph: max((im["phases"].get(ph, {}).get("peak_memory_mb") or 0.0) for im in images)
                                 for ph in phases},
        # how far apart the particles are while they explore (Exp 1's check: repulsion spreads them)
        "explore_pairwise_distance_mean": _mean([explore_spread(im) for im in images]),
        # each stage's own fields (sampler/stage.py: Stage.summary)
        **{k: v for stage in ordered() for k, v in stage.summary(images).items()},
        # eval.per_step only: the t from which a final particle's mode label no longer changed, median over particles
        "mode_commit_t_median": statistics.median(commits) if commits else None,
    }
