"""Compute per run: the rows each network processes (decoder VJP and forward, UNet, encoder), counted at the model's
methods, and their TFLOP by the cost model (a FLOP count of one row on the meta device)."""
from __future__ import annotations

import torch

KINDS = ("decoder_vjp", "decoder_forward", "unet", "unet_vjp", "encoder")


def tflop_per_row(model_cfg) -> dict | None:
    """TFLOP of one row of each network kind for an LDM config (shapes only: no weights, no arithmetic); None for
    models without networks (the two-mode benchmarks: a closed-form denoiser and a fixed decoder)."""
    if model_cfg.name != "ldm":
        return None
    from torch.utils.flop_counter import FlopCounterMode

    from models.ldm.model import LatentDiffusion

    model = LatentDiffusion(model_cfg, meta=True).requires_grad_(False)
    model.denoiser.to("meta")
    z = torch.zeros(1, *model.latent_shape, device="meta")
    out = {}
    for kind, call in (("decoder_vjp", lambda: model.decode(z.requires_grad_(True)).sum().backward()),
                       ("decoder_forward", lambda: model.decode(z.detach())),
                       ("unet", lambda: model.denoise(z.detach(), 1.0)),
                       ("unet_vjp", lambda: model.denoise(z.requires_grad_(True), 1.0).sum().backward()),
                       ("encoder", lambda: model.encode(torch.zeros(1, *model.image_shape, device="meta")))):
        with FlopCounterMode(display=False) as fc, torch.set_grad_enabled(kind.endswith("_vjp")):
            call()
        out[kind] = fc.get_total_flops() / 1e12
    return out


class NetworkCounter:
    """Wraps a model's decode, its network (an LDM's `eps`, which `denoise` calls; else `denoise`) and encode
    (instance attributes over the methods, as torch.compile's are) and counts the rows they process. A call whose
    input requires grad under grad mode is a VJP (its backward follows: the MCMC gradient, the optimiser, pixel
    repulsion, ReSample's guidance through the UNet); any other is a forward. One counter per run: each
    measurement (a batch's sampling, an image's orientation) takes the rows counted since the last one."""

    def __init__(self, model):
        self.rows = dict.fromkeys(KINDS, 0)
        self.network = "eps" if hasattr(model, "eps") else "denoise"
        decode, network, encode = model.decode, getattr(model, self.network), model.encode

        def counted_decode(z, *args, **kwargs):
            vjp = torch.is_grad_enabled() and z.requires_grad
            self.rows["decoder_vjp" if vjp else "decoder_forward"] += z.shape[0]
            return decode(z, *args, **kwargs)

        def counted_network(z, *args, **kwargs):
            vjp = torch.is_grad_enabled() and z.requires_grad
            self.rows["unet_vjp" if vjp else "unet"] += z.shape[0]
            return network(z, *args, **kwargs)

        def counted_encode(x, *args, **kwargs):
            self.rows["encoder"] += x.shape[0]
            return encode(x, *args, **kwargs)

        self.model, self._originals = model, (decode, network, encode)
        model.decode, model.encode = counted_decode, counted_encode
        setattr(model, self.network, counted_network)

    def take(self) -> dict:
        """The rows counted since the last take (or since the counter was made)."""
        rows, self.rows = self.rows, dict.fromkeys(KINDS, 0)
        return rows

    def remove(self):
        """Put the model's own methods back."""
        decode, network, encode = self._originals
        self.model.decode, self.model.encode = decode, encode
        setattr(self.model, self.network, network)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


def compute_record(rows: dict, per_row: dict | None) -> dict:
    """metric.json's `compute` block: rows per network and TFLOP by the cost model."""
    tflop = None if per_row is None else sum(rows.get(k, 0) * per_row[k] for k in KINDS)
    return {"rows": dict(rows), "tflop": tflop, "tflop_per_row": per_row}
