"""One image's metric.json entry: its particles measured against the ground truth (`evaluate_image`, the model's
work) and the entry assembled from them and the image's slice of the trace (`image_record`, pure)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from core.tensors import rot180
from core.tensors import per_row
from evaluation.failures import KINDS, failure_kind
from evaluation.metrics import best_of_n, evaluate_particles, modes
from stages import ordered
from sampler.state import orientation_generator
from tracking.compute import compute_record

# how an image's step record shows a per-particle fact of the trace: (its key, the reduction over the image's
# particles); "list" keeps every value in batch order, the others skip None (None when nothing is left). The
# tracker's and the per-step metrics' facts here, each stage's in its declaration (sampler/stage.py)
STEP_FACTS = {"loss": [("loss", "list")], "psnr": [("psnr", "list")], "psnr_180": [("psnr_180", "list")],
              "mode": [("mode", "list")]}
REDUCE = {"mean": lambda v: sum(v) / len(v), "max": max, "sum": sum}


def step_facts() -> dict:
    return {**STEP_FACTS, **{k: v for stage in ordered() for k, v in stage.step_facts.items()}}


@dataclass(frozen=True)
class EvalSettings:
    """What evaluating and recording an image read of a run's settings (pipeline/resolve.py makes it): the seed (of
    the orientation scores' noise), the data's fail_psnr, the resolved `orientation` and `trust` blocks."""

    seed: int
    fail_psnr: float
    orientation: object
    trust: object


def particle_rows(x, gt, y, operator, fail_psnr, lpips_model, eq, particle_ids, alive, pruned=None) -> list[dict]:
    """Metrics, best match in the equivalence class eq, mode label and final measurement loss of each decoded
    particle x (B, C, H, W)."""
    rows = evaluate_particles(x, gt, eq, fail_psnr, lpips_model)
    losses = operator.loss(x, y.expand(x.shape[0], *y.shape[1:])).tolist()
    for row, pid, loss, ok in zip(rows, particle_ids, losses, alive):
        row.update(particle=int(pid), measurement_loss=loss, failed=not bool(ok), pruned_at=pruned)
        if not ok:
            row["mode"] = "fail"
    return rows


def orient(model, z, x, gt, settings: EvalSettings, lpips_model, eq, index, rows, counter, operator) -> dict:
    """Each final particle's prior_log_ratio, its oriented image's metrics (x, or rot x where the prior prefers it and
    the operator cannot tell the two apart) and its estimated log-posterior (-loss / 2 sigma^2 plus the oriented
    image's log prior), written into its row; returns the rows the orientation cost its networks. An operator that
    tells an image from its rotation needs no orientation: the particle is its answer as sampled, no prior is scored
    (no network call) and the log-posterior is the likelihood's alone."""
    from evaluation.orientation import log_ratio, method_of, prior_scores

    counter.take()
    if not operator.rotation_ambiguous:
        for row in rows:
            row["log_posterior"] = -row["measurement_loss"] / (2 * operator.sigma ** 2)
            row["oriented"] = {"rotated": False, **{k: row[k] for k in ("psnr", "ssim", "lpips", "psnr_shift", "mode")}}
            if row["failed"]:
                row["oriented"]["mode"] = "fail"
        return counter.take()
    lp_x, lp_rot, se = prior_scores(model, z, settings.orientation, orientation_generator(settings.seed, index), x)
    cost = counter.take()
    ratio = log_ratio(lp_x, lp_rot, method_of(model, settings.orientation))
    flip = ratio < 0                                 # the operator cannot tell x from rot x (returned above)
    oriented = evaluate_particles(torch.where(per_row(flip.to(x.device), x), rot180(x), x), gt, eq,
                                  settings.fail_psnr, lpips_model)
    log_prior = torch.where(flip, lp_rot, lp_x).tolist()
    sigma = operator.sigma
    for row, r, e, f, o, lp in zip(rows, ratio.tolist(), se.tolist(), flip.tolist(), oriented, log_prior):
        row["prior_log_ratio"] = r
        row["prior_log_ratio_se"] = e           # the estimate's own noise (evaluation/orientation.subgrid_error)
        row["log_posterior"] = -row["measurement_loss"] / (2 * sigma ** 2) + lp
        row["oriented"] = {"rotated": f, **{k: o[k] for k in ("psnr", "ssim", "lpips", "psnr_shift", "mode")}}
        if row["failed"]:
            row["oriented"]["mode"] = "fail"
    return cost


def label_failures(particles: list[dict], fail_psnr: float, limit: float, rep: dict | None) -> None:
    """Each particle's `failure` (evaluation/failures.py), written into its row (and its oriented view's)."""
    representable = rep is None or rep["representable"]
    for p in particles:
        p["failure"] = failure_kind(p, fail_psnr, limit, representable)
        if "oriented" in p:
            p["oriented"]["failure"] = p["failure"]


@dataclass
class Evaluated:
    """One image's particles measured against its ground truth."""

    particles: list[dict]            # final and pruned, by particle id
    orientation_rows: dict           # network rows the orientation scores cost
    answer_rows: dict                # network rows decoding the final particles cost
    x: torch.Tensor                  # the final particles decoded
    dropped: list                    # (ids, decoded) of the pruned particles, per pruning decision
    eq: object                       # the ground truth's equivalence class (operators/symmetry.py)
    representability: dict | None    # whether the model can make the ground truth (evaluation/failures.py)
    trust: dict                      # how far to trust the answer, without the ground truth (evaluation/trust.py)


@torch.no_grad()
def evaluate_image(model, operator, result, gt, settings: EvalSettings, lpips_model, counter, rep: dict | None,
                   check: dict | None) -> Evaluated:
    """Every particle of one image result, final and pruned, against the ground truth gt (1, C, H, W); rep: whether
    the model can make gt (evaluation/failures.representability; None: no first stage, or not known); check: the
    model's stored orientation check (evaluation/trust.orientation_check), for the answer's trust label."""
    from evaluation.orientation import SUBGRIDS
    from evaluation.trust import assess

    eq = operator.equivalents(gt)
    counter.take()
    x = model.decode(result.z)
    answer_rows = counter.take()                # the final particles decoded: the answer costs them, as its scores
    particles = particle_rows(x, gt, result.y, operator, settings.fail_psnr, lpips_model, eq, result.particle_ids,
                              result.alive)
    orientation_rows = orient(model, result.z, x, gt, settings, lpips_model, eq, result.index, particles, counter,
                              operator)
    # how far to trust the answer: from the final particles' losses, images and prior scores, never the ground truth
    alive = [p for p in particles if not p["failed"]] or particles
    m = result.y[0].numel()
    trust = assess(x, particles, choose(alive, settings.orientation.choose), operator, m, settings.fail_psnr, check,
                   settings.trust, SUBGRIDS)
    dropped_images = []
    for (k, t), group in _by_decision(result.dropped):
        pids = [d["particle"] for d in group]
        xd = model.decode(torch.stack([d["z0"] for d in group]))
        particles += particle_rows(xd, gt, result.y, operator, settings.fail_psnr, lpips_model, eq, pids,
                                   [True] * len(pids), {"k": k, "t": t})
        dropped_images.append((pids, xd))
    particles.sort(key=lambda p: p["particle"])
    label_failures(particles, settings.fail_psnr, operator.fit_limit(m), rep)
    return Evaluated(particles, orientation_rows, answer_rows, x, dropped_images, eq, rep, trust)


def operator_rotation(evaluated: Evaluated) -> bool:
    """Whether the image's class holds its rotation: the operator cannot tell the two apart."""
    return any(evaluated.eq.rotated)


def _by_decision(dropped: list[dict]):
    groups = {}
    for d in dropped:
        groups.setdefault((d["k"], d["t"]), []).append(d)
    return groups.items()


CHOICES = ("loss", "posterior")


def choose(alive: list[dict], rule: str) -> dict:
    """A choice without the ground truth, in the orientation its prior prefers: the particle with the lowest
    measurement loss (`loss`: the loss cannot tell an orientation, but it tells a fit from a failure), or with the
    highest estimated log-posterior (`posterior`: loss and prior together, which also tells near-ties of the loss
    apart, such as shifted copies)."""
    p = (min(alive, key=lambda q: q["measurement_loss"]) if rule == "loss"
         else max(alive, key=lambda q: q["log_posterior"]))
    return {"particle": p["particle"], "rule": rule, "prior_log_ratio": p.get("prior_log_ratio"), **p["oriented"]}


def steps_record(trace) -> list[dict]:
    """One record per annealing step: the batch's facts, the image's, and its particles' (STEP_FACTS)."""
    steps: dict[int, dict] = {}
    facts: dict[int, dict[str, list]] = {}
    for r in trace.of("step"):
        rec = steps.setdefault(r["k"], {"particles": 0, "particle_ids": []})
        values = {k: v for k, v in r.items() if k not in ("kind", "image", "particle", "k")}
        if "particle" not in r:
            rec.update(values)
            continue
        if "loss" in values:                          # the tracker's row: the particles alive after the step
            rec["particles"] += 1
            rec["particle_ids"].append(r["particle"])
        for key, v in values.items():
            facts.setdefault(r["k"], {}).setdefault(key, []).append(v)
    how_shown = step_facts()
    for k, rec in steps.items():
        for key, vals in facts.get(k, {}).items():
            for out, how in how_shown[key]:
                kept = vals if how == "list" else [v for v in vals if v is not None]
                rec[out] = kept if how == "list" else (REDUCE[how](kept) if kept else None)
    return [{"k": k, **steps[k]} for k in sorted(steps)]


def image_record(result, name: str, evaluated: Evaluated, settings: EvalSettings, stage_records: dict, cost_per_row,
                 mode_weights=None) -> dict:
    """metric.json's entry for one image result and its evaluated particles (pure: no model, no files);
    stage_records: each stage that ran -> its section (stage_records below); mode_weights: the exact posterior
    weights of 0° and 180° where the model knows them (the benchmarks)."""
    particles = evaluated.particles
    final = [p for p in particles if p["pruned_at"] is None]
    alive = [p for p in final if not p["failed"]] or final
    phases = {r["phase"]: {k: v for k, v in r.items() if k not in ("kind", "phase")}
              for r in result.trace.of("phase")}
    record = {
        "index": result.index, "name": name,
        "particles": particles,
        "best_of_n": best_of_n(final),
        "best_oracle": max(final, key=lambda p: p["psnr"]),
        "best_by_loss": min(alive, key=lambda p: p["measurement_loss"]),
        "best_by_prior": choose(alive, settings.orientation.choose),
        "choices": {rule: choose(alive, rule) for rule in CHOICES},
        # the prior's orientation step: none where the operator tells an image from its rotation (no network call)
        "orientation": {"method": settings.orientation.method if operator_rotation(evaluated) else None,
                        **compute_record(evaluated.orientation_rows, cost_per_row)},
        "equivalence": evaluated.eq.record(),
        "representability": evaluated.representability,
        "trust": evaluated.trust,
        "modes": {m: sum(p["mode"] == m for p in final) for m in modes(operator_rotation(evaluated))},
        "failures": {k: sum(p["failure"] == k for p in final) for k in KINDS},
        # up to the measurement's symmetries: some final particle is the image, its rotation or a shifted copy
        "found": any(p["mode"] != "fail" for p in final),
        "gt_mode_found": any(p["mode"] == "0" for p in final),
        "both_modes": (any(p["mode"] == "0" for p in final) and any(p["mode"] == "180" for p in final)
                       if operator_rotation(evaluated) else None),
        "mode_weights": mode_weights,
        "phases": phases, "total_time_s": sum(p["time_s"] for p in phases.values()),
        # the sampler's network work (evaluation decodes excluded): the image's share of its batch's
        "compute": compute_record(result.network_rows, cost_per_row),
        # every network call the configuration causes: the sampler's, decoding the final particles, the orientation
        # scores (what comparisons of compute read); the ground truth's reconstruction and the pruned particles'
        # decodes for their metrics are the benchmark's, not the configuration's
        "compute_total": compute_record({k: result.network_rows[k] + evaluated.answer_rows[k] +
                                         evaluated.orientation_rows[k] for k in result.network_rows}, cost_per_row),
        "batch": result.batch,
        "boundaries": result.boundaries,
        "steps": steps_record(result.trace),
    }
    record.update(stage_records)                     # each stage that ran adds its own section
    return record


def stage_records(trace, active) -> dict:
    """Each stage that ran -> its section of the image's record, from the image's slice of the trace; active: the
    stages that are on with their settings (pipeline.resolve.RunSettings.active)."""
    return {stage.name: stage.record(trace, settings) for stage, settings in active if stage.record is not None}
