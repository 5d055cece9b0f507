"""Batched optimisation with per-particle Adam and per-particle stopping (ReSample's hard data consistency: the refine
stage's and the ReSample sampler's latent optimisation, the sampler's pixel optimisation)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from core.tensors import per_row

STOP_REASONS = ("threshold", "plateau", "max_iters", "nonfinite", "frozen")


@dataclass
class AdamState:
    """Adam moments per element and step counts per particle, so every particle has its own bias correction."""

    m: torch.Tensor        # (B, ...) first moment
    v: torch.Tensor        # (B, ...) second moment
    steps: torch.Tensor    # (B,) long, Adam steps taken

    @classmethod
    def zeros_like(cls, z: torch.Tensor) -> "AdamState":
        return cls(torch.zeros_like(z), torch.zeros_like(z), torch.zeros(z.shape[0], dtype=torch.long, device=z.device))


def adam_step(z, grad, adam: AdamState, active, lr: float, betas=(0.9, 0.999), eps: float = 1e-8,
              weight_decay: float = 0.0):
    """One Adam(W) update of the particles where `active` is True; the other rows of z and moments are returned as is.

    Same update as torch.optim.AdamW (decoupled weight decay; weight_decay=0 is Adam), written per particle.
    """
    b1, b2 = betas
    act = per_row(active, z)
    steps = adam.steps + active.long()
    m = torch.where(act, b1 * adam.m + (1 - b1) * grad, adam.m)
    v = torch.where(act, b2 * adam.v + (1 - b2) * grad * grad, adam.v)
    t = per_row(steps.clamp(min=1), z).to(z.dtype)          # inactive rows may have 0 steps; their update is discarded
    m_hat = m / (1 - b1 ** t)
    v_hat = v / (1 - b2 ** t)
    z_new = z * (1 - lr * weight_decay) - lr * m_hat / (v_hat.sqrt() + eps)
    return torch.where(act, z_new, z), AdamState(m, v, steps)


def _loss_and_grad(loss_fn, z, index, need_grad: bool):
    if not need_grad:
        with torch.no_grad():
            return loss_fn(z, index).detach(), None
    z = z.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = loss_fn(z, index)
        # the losses are per particle, so the gradient of their sum is each particle's own gradient
        (grad,) = torch.autograd.grad(loss.sum(), z)
    return loss.detach(), grad


def optimize_latents(z, loss_fn, lr: float = 5e-3, max_iters: int = 500, threshold: float = 0.0,
                     plateau_window: int = 200, betas=(0.9, 0.999), adam_eps: float = 1e-8,
                     weight_decay: float = 0.0, frozen: torch.Tensor | None = None, step_past_stop: bool = False):
    """Minimise loss_fn over z with Adam, each particle stopped on its own; returns (z_opt, info).

    loss_fn(z_sub, index) -> (n,) losses of the rows z_sub (n, ...) whose positions in the batch are `index`
    (LongTensor); a particle's loss must depend on its own row only. Only still-running particles are passed,
    so stopped particles cost nothing. At iterate i (after i Adam steps) a particle stops with reason
      'threshold'  when loss_i < threshold,
      'plateau'    when i >= plateau_window and loss_i > loss_{i - plateau_window} (0 switches it off),
      'nonfinite'  when loss_i is NaN/inf (its latent then is not usable; the caller should reject it),
      'max_iters'  when i == max_iters,
    and keeps z_i, or with `step_past_stop` z_{i+1} for the threshold and plateau rules (ReSample's own loop tests
    the loss of z_i after taking its step: it returns one more step, and counts it); a `frozen` particle ((B,) mask: a diverged one) is never evaluated, 0 steps, reason 'frozen',
    NaN losses. info: iterations (B,) Adam steps taken, stop_reason list[str], loss_before (B,) = loss_0,
    loss_after (B,) = loss of the returned latent, adam (the final AdamState).
    """
    B, dev = z.shape[0], z.device
    z = z.detach().clone()
    adam = AdamState.zeros_like(z)
    active = torch.ones(B, dtype=torch.bool, device=dev) if frozen is None else ~frozen
    code = torch.where(active, -1, STOP_REASONS.index("frozen"))    # index into STOP_REASONS
    loss_before = torch.full((B,), float("nan"), dtype=z.dtype, device=dev)
    loss_after = loss_before.clone()
    # ring buffer of the last plateau_window losses; slot i % W holds loss_{i-W} when iterate i is read
    W = plateau_window
    history = torch.full((max(W, 1), B), float("inf"), dtype=z.dtype, device=dev)

    for i in range(max_iters + 1):
        index = active.nonzero().squeeze(1)
        if index.numel() == 0:
            break
        loss, grad = _loss_and_grad(loss_fn, z[index], index, need_grad=i < max_iters)
        loss = loss.to(z.dtype)
        if i == 0:
            loss_before[index] = loss
        loss_after[index] = loss

        no = torch.zeros_like(loss, dtype=torch.bool)
        hits = torch.stack([                       # one row per STOP_REASONS entry, in that order
            loss < threshold,
            (loss > history[i % W, index]) if (W > 0 and i >= W) else no,
            no | (i == max_iters),
            ~torch.isfinite(loss),
        ])
        stop = hits.any(0)
        # where several rules fire at once the non-finite one wins, then the order of STOP_REASONS
        first = torch.where(hits[3], 3, hits.long().argmax(0))
        # writes through `index` with masks as values, not boolean indexing: no device sync per iteration
        code[index] = torch.where(stop, first, code[index])
        if W > 0:
            history[i % W, index] = loss
        active[index] = ~stop
        if i == max_iters:
            break
        go = torch.zeros(B, dtype=torch.bool, device=dev)
        go[index] = (~stop | (hits[0] | hits[1]) & ~hits[3]) if step_past_stop else ~stop
        g = torch.zeros_like(z)
        g[index] = grad
        z, adam = adam_step(z, g, adam, go, lr, betas, adam_eps, weight_decay)

    info = {"iterations": adam.steps.clone(), "stop_reason": [STOP_REASONS[c] for c in code.tolist()],
            "loss_before": loss_before, "loss_after": loss_after, "adam": adam}
    return z, info
