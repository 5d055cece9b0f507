"""Why a particle failed: whether the model can make the ground truth at all (its first stage's reconstruction fits
the measurement within the noise), and each failed particle's kind (twin, unrepresentable, fits, search)."""
from __future__ import annotations

import torch

from core.tensors import to_unit

# in the order they are tested: the first that applies names the failure
KINDS = ("twin", "unrepresentable", "fits", "search")


@torch.no_grad()
def reconstruct(model, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The first stage's reconstruction D(E(x)) of a batch (G, C, H, W) and its PSNR against each image (G,): piq
    on [0, 1] images, as every metric here."""
    import piq  # lazily: it imports torchvision's model zoo (1.6 s per process)

    rec = model.decode(model.encode(images))
    return rec, piq.psnr(to_unit(rec.float()), to_unit(images.float()), data_range=1.0, reduction="none")


def data_setting(data_cfg, key: str):
    """A data setting, its declared default where the data set's YAML leaves it out (data.SETTINGS)."""
    from core.settings import value
    from data.datasets import SETTINGS

    return value(data_cfg, SETTINGS, key)


@torch.no_grad()
def truths(model, images: torch.Tensor, data_cfg) -> tuple[torch.Tensor, torch.Tensor | None, list]:
    """The ground truths a batch of images (G, C, H, W) is measured from, the model's best reconstruction of each
    (None without a first stage) and the first stage's PSNR on each given image.

    data.ground_truth=decoded: the truth is D(E(x)), made by a latent, so it is its own reconstruction (the
    two_mode_latent benchmark's data are D(mu_j) already); raw: the image itself, reconstructed as D(E(x))."""
    if not model.has_first_stage:
        return images, None, [None] * len(images)
    rec, psnr = reconstruct(model, images)
    psnr = psnr.tolist()
    if data_setting(data_cfg, "ground_truth") != "decoded":
        return images, rec, psnr
    if data_cfg.name == "two_mode_latent":
        return images, images, [None] * len(images)
    return rec, rec, psnr


@torch.no_grad()
def representability(operator, gt: torch.Tensor, rec: torch.Tensor | None, y: torch.Tensor,
                     first_stage_psnr: float | None) -> dict | None:
    """Can the model make the ground truth gt (1, C, H, W)? Its reconstruction rec (1, C, H, W) and gt under the
    image's measurement y: representable when the reconstruction fits y within the noise by the operator's one rule
    (operator.fit_limit), i.e. some latent explains y as well as the truth does. None without a first stage."""
    if rec is None:
        return None
    losses = operator.loss(torch.cat([gt, rec]), y.expand(2, *y.shape[1:])).tolist()
    m = y[0].numel()
    return {"first_stage_psnr": first_stage_psnr, "loss_truth": losses[0], "loss_reconstruction": losses[1],
            "margin": operator.loss_margin(m), "fit_factor": operator.fit_factor,
            "representable": losses[1] <= operator.fit_limit(m)}


def failure_kind(row: dict, fail_psnr: float, limit: float, representable: bool) -> str | None:
    """None for a particle in the ground truth's class; else why not, the first that applies:
    twin: it is a measurement-identical image that is not a right answer (channels turned differently);
    unrepresentable: the model cannot make the truth (its reconstruction does not fit y within the noise);
    fits: its loss is within the noise (under limit, operator.fit_limit: the rule the trust label uses too), so the
    measurement cannot tell it from the truth: the prior must;
    search: its loss is above the limit: a better-fitting latent exists (the truth's) and the sampler missed it."""
    if row["mode"] != "fail":
        return None
    if row.get("twin_psnr") is not None and row["twin_psnr"] >= fail_psnr:
        return "twin"
    if not representable:
        return "unrepresentable"
    return "fits" if row["measurement_loss"] <= limit else "search"


def relabel_failures(im: dict, fit_factor: float) -> dict:
    """An image record with its particles' failure kinds (and representability) judged again by the one rule at
    this fit factor, from the fields the record stores: the noise margin, each particle's loss and mode, the first
    stage's reconstruction loss; a twin stays a twin (that does not depend on the noise). A copy."""
    rep = im.get("representability")
    margin = (rep or im.get("trust") or {}).get("margin")
    if margin is None:
        return im
    limit = fit_factor * margin
    out = {**im, "particles": [dict(p) for p in im["particles"]]}
    representable = rep is None or rep["loss_reconstruction"] <= limit
    if rep is not None:
        out["representability"] = {**rep, "representable": representable, "fit_factor": fit_factor}
    for p in out["particles"]:
        if p.get("failure") != "twin":
            p["failure"] = failure_kind({**p, "twin_psnr": None}, 0.0, limit, representable)
    return out


def kind_shares(particles: list[dict]) -> dict[str, float | None]:
    """Share of the given particles failing in each kind (the found ones make up the rest)."""
    n = len(particles)
    return {k: (sum(p.get("failure") == k for p in particles) / n if n else None) for k in KINDS}
