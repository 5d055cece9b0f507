"""How far to trust an image's answer, decided without the ground truth: whether any final particle fits the
measurement, whether the fits are one image up to the operator's symmetries, and whether the prior can tell the
answer from its rotation (the model's stored orientation check and the answer's own ELBO gap against its noise)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from core.errors import is_number
from core.settings import Setting, number

# in the order they are tested: the first that applies is the label
LABELS = ("no fit", "ambiguous", "orientation undetermined", "determined")
CHECK_FILE = "orientation_check.json"      # beside a checkpoint: scripts/orientation_on_truths.py --write

SETTINGS = {
    "threshold": number(0.5, 1, default=0.8, help="a model whose ELBO prefers its own upright decoded test images "
                                                  "less often than this (orientation_check.json) cannot orient "
                                                  "an answer: every fitting answer is `orientation undetermined`"),
    "fit_factor": Setting("auto", lambda v: v == "auto" or (is_number(v) and v >= 1), "auto or a number >= 1",
                          "a final particle fits when its loss is within this factor of the noise margin "
                          "(operator.loss_margin); auto: the operator's own, measured (operator.fit_factor: phase "
                          "retrieval 1.065), the rule the failure kinds use too"),
    "ambiguity_sd": number(0, default=1.0, help="two fits are ambiguous when they are different images and their losses "
                                                "differ by at most this many standard deviations of the noise's "
                                                "||n||^2 (operator.loss_sd): the measurement cannot tell them apart"),
}


# the share of right final particles an operator's fit factor must hold (scripts/studies/trust_calibration.py,
# scripts/studies/fit_factor.py)
COVER = 0.975


def right_loss_ratios(images: list[dict]) -> np.ndarray:
    """Each right final particle's loss over its image's noise margin (the records' trust.margin)."""
    return np.array([p["measurement_loss"] / im["trust"]["margin"] for im in images for p in im["particles"]
                     if p.get("pruned_at") is None and p["mode"] != "fail"])


def smallest_factor(ratios: np.ndarray, cover: float = COVER, most: float = 10.0) -> float:
    """The smallest fit factor, in steps of 0.005 from 1, within which at least `cover` of these ratios fall."""
    return next(f for f in np.arange(1.0, most, 0.005) if (ratios <= f + 1e-12).mean() >= cover)


def fit_factor_of(setting, operator) -> float:
    """trust.fit_factor as a number: auto is the operator's own, measured (operator.fit_factor)."""
    return float(operator.fit_factor if setting == "auto" else setting)


def fits(losses: list[float], same: list[bool], margin: float, fit_factor: float, loss_sd: float,
         ambiguity_sd: float) -> tuple[int, int]:
    """(how many final particles fit, how many of those are another image than the best fit and as close to y as
    it up to the noise): a particle fits within fit_factor x the noise margin; a different fitting image counts when
    its loss is within ambiguity_sd x loss_sd of the best fit's (same[i]: particle i is the best fit's image)."""
    best = min(losses)
    fitting = [i for i, v in enumerate(losses) if v <= fit_factor * margin]
    return len(fitting), sum(not same[i] and losses[i] <= best + ambiguity_sd * loss_sd for i in fitting)


def check_path(model_cfg) -> Path | None:
    """Where a model's stored orientation check lives: beside its checkpoint (None without one)."""
    ckpt = model_cfg.get("ckpt_path") if model_cfg.name == "ldm" else None
    if ckpt is None:
        return None
    from models.ldm.model import _resolve

    return _resolve(str(ckpt)).parent / CHECK_FILE


def orientation_check(model_cfg) -> dict | None:
    """The model's stored orientation check ({"upright": share of its decoded test images whose ELBO prefers the
    upright image, ...}), or None where none is stored."""
    path = check_path(model_cfg)
    if path is None or not path.is_file():
        return None
    return json.loads(path.read_text())


def t_quantile(groups: int) -> float:
    """The two-sided 95 % Student t quantile for the mean of `groups` sub-grid estimates."""
    from scipy.stats import t

    return float(t.ppf(0.975, groups - 1))


@torch.no_grad()
def same_image(x: torch.Tensor, reference: int, operator, fail_psnr: float) -> list[bool]:
    """Per particle of x (B, C, H, W, decoded): whether it is the reference particle's image up to the operator's
    symmetries (its equivalence class: rotation, shifts, per-channel twins as declared), by the same PSNR threshold
    that tells a particle from the ground truth."""
    from evaluation.equivalence import class_matches

    matches = class_matches(x, operator.equivalents(x[reference]))
    twin = [m["twin_psnr"] is not None and m["twin_psnr"] >= fail_psnr for m in matches]
    return [i == reference or m["class_psnr"] >= fail_psnr or t for i, (m, t) in enumerate(zip(matches, twin))]


def loss_sd_of(margin: float, sigma: float) -> float:
    """sigma^2 sqrt(2 m) from a record's noise margin sigma^2 (m + 3 sqrt(2 m)) (operators/base.py), for records
    older than their `loss_sd` field."""
    u = (-3 * math.sqrt(2) + math.sqrt(18 + 4 * margin / sigma ** 2)) / 2          # u = sqrt(m)
    return sigma ** 2 * math.sqrt(2) * u


def relabel(im: dict, fit_factor: float, ambiguity_sd: float, threshold: float | None = None,
            loss_sd: float | None = None) -> str:
    """An image record's trust label again under other settings, from what its record keeps: the final particles'
    losses, which of them are the best fit's image, the answer's gap and its noise limit (loss_sd: for records older
    than their `loss_sd` field). For choosing the settings from a study's records: scripts/studies/trust_calibration.py."""
    t = im["trust"]
    final = [p for p in im["particles"] if p.get("pruned_at") is None]
    same = {str(k): v for k, v in t["same_as_best_fit"].items()}          # keys are strings once read from JSON
    n_fit, distinct = fits([p["measurement_loss"] for p in final], [same[str(p["particle"])] for p in final],
                           t["margin"], fit_factor, t.get("loss_sd", loss_sd), ambiguity_sd)
    return label(n_fit, distinct, "gap" in t, t.get("orientation_check"),
                 t.get("threshold") if threshold is None else threshold, t.get("gap"), t.get("gap_limit"))


def label(fitting: int, distinct: int, rotation: bool, reliability: float | None, threshold: float,
          gap: float | None, gap_limit: float | None) -> str:
    """The first that applies: no fit (no final particle within the noise), ambiguous (fits that are different
    images), orientation undetermined (the measurement cannot orient the answer and the prior does not: its model's
    stored check is below the threshold, or the answer's log-ratio is within its own noise), determined."""
    if fitting == 0:
        return "no fit"
    if distinct > 0:
        return "ambiguous"
    if rotation:
        if reliability is not None and reliability < threshold:
            return "orientation undetermined"
        if gap is not None and abs(gap) <= gap_limit:
            return "orientation undetermined"
    return "determined"


def assess(x: torch.Tensor, final: list[dict], answer: dict, operator, m: int, fail_psnr: float,
           check: dict | None, settings, groups: int) -> dict:
    """An image's trust block from its final particles' rows (in the order of x), its answer (best_by_prior), the
    number of measurements m, the model's stored check and the `trust` settings: `label` and the evidence it rests
    on. Reads nothing of the ground truth."""
    margin, loss_sd = operator.loss_margin(m), operator.loss_sd(m)
    factor = fit_factor_of(settings.fit_factor, operator)
    losses = [p["measurement_loss"] for p in final]
    best = min(range(len(final)), key=losses.__getitem__)
    # every final particle against the best fit (kept for each particle, so other settings can be judged later)
    same = same_image(x, best, operator, fail_psnr) if len(final) > 1 else [True]
    n_fit, distinct = fits(losses, same, margin, factor, loss_sd, settings.ambiguity_sd)
    chosen = [p["particle"] for p in final].index(answer["particle"])
    rotation = operator.rotation_ambiguous
    row = final[chosen]
    gap, se = row.get("prior_log_ratio"), row.get("prior_log_ratio_se")
    limit = None if se is None else (t_quantile(groups) * se if se > 0 else 0.0)
    reliability = None if check is None else check.get("upright")
    out = {"label": label(n_fit, distinct, rotation, reliability, settings.threshold, gap, limit),
           "fitting": n_fit, "distinct_fits": distinct, "margin": margin, "fit_factor": factor, "loss_sd": loss_sd,
           "same_as_best_fit": dict(zip([p["particle"] for p in final], same))}
    if rotation:
        out.update(orientation_check=reliability, threshold=settings.threshold, gap=gap, gap_limit=limit)
    return out


def shares(images: list[dict]) -> dict[str, float] | None:
    """Each label's share of the images that carry one."""
    labels = [im["trust"]["label"] for im in images if im.get("trust")]
    if not labels:
        return None
    return {k: sum(lab == k for lab in labels) / len(labels) for k in LABELS}


def not_determined(images: list[dict]) -> list[tuple[int, str]]:
    """(index, label) of every image whose answer is not `determined`: the ones to act on (docs/workflow.md)."""
    return [(im["index"], im["trust"]["label"]) for im in images
            if im.get("trust") and im["trust"]["label"] != "determined"]
