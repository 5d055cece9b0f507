"""Train a mini LDM (models/ldm at the widths of configs/model/<name>.yaml) on data that ship inside installed packages:
the VQ-f4 autoencoder, then the UNet on its latents; write a Lightning-format checkpoint and its model card.

    python scripts/training/train_mini_ldm.py                      # the shipped weights/digits32ldm (47 min, 2 cores)
    python scripts/training/train_mini_ldm.py --data natural --ae-steps 2000 --unet-steps 6000   # the shipped naturalldm
    python scripts/training/train_mini_ldm.py --out /tmp/mini --ae-steps 20 --unet-steps 20 --gate-samples 16   # a smoke run

Data: `digits` (scikit-learn's digits, train split, data/digits.py) or `natural` (fresh random 32 px crops of six
skimage photographs every step, left-right flips only, data/natural.py; the UNet trains on a fixed pool of them).

Autoencoder: L1 + MSE reconstruction, codebook and commitment (beta 0.25) losses, straight-through quantiser, codes
unused for `--restart-every` steps re-seeded from encoder outputs. The latent scale is then folded into quant_conv,
the codebook and post_quant_conv so that the latents have unit variance (scale_factor stays 1, as ffhq256ldm).
UNet: eps-prediction on the continuous (unquantised) latents, t uniform over the CompVis linear schedule's 1000
steps, AdamW with warm-up and cosine decay, EMA weights saved. Fixed seed; CPU.
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from data.digits import TRAIN_SIZE, digits
from quality.gates import sample_grid
from models.ldm.denoiser import ldm_alphas_cumprod
from models.ldm.model import DEFAULT_SCHEDULE, LatentDiffusion

ROOT = Path(__file__).resolve().parents[2]

COMMITMENT = 0.25


def log(msg: str) -> None:
    tqdm.write(msg, file=sys.stderr)


def cosine_lr(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup))))


def vq_losses(vq, x: torch.Tensor) -> tuple[torch.Tensor, dict, torch.Tensor]:
    """Total loss, its parts, and the code indices of the batch."""
    z = vq.encode(x)
    idx = vq.quantize.indices(z)
    q = vq.quantize.lookup(idx)
    rec = vq.decoder(vq.post_quant_conv(z + (q - z).detach()))
    parts = {"l1": (rec - x).abs().mean(), "mse": (rec - x).square().mean(),
             "codebook": (q - z.detach()).square().mean(), "commit": (z - q.detach()).square().mean()}
    total = parts["l1"] + parts["mse"] + parts["codebook"] + COMMITMENT * parts["commit"]
    return total, {k: v.item() for k, v in parts.items()}, idx


def latent_vectors(vq, x: torch.Tensor) -> torch.Tensor:
    """The encoder's latent vectors of a batch, one row per position: (B*H*W, embed_dim)."""
    z = vq.encode(x)
    return z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])


def train_autoencoder(vq, draw, steps: int, batch: int, lr: float, restart_every: int, gen,
                      log_every: int = 100) -> list[dict]:
    """draw(batch, gen, first=False) -> a batch of training images; `first` for the codebook's seeding draw."""
    n, dim = vq.quantize.embedding.weight.shape
    with torch.no_grad():  # codebook seeded from encoder outputs: no code starts dead
        z = latent_vectors(vq, draw(batch, gen, first=True))
        vq.quantize.embedding.weight.copy_(z[torch.randint(len(z), (n,), generator=gen)]
                                           + 0.01 * torch.randn(n, dim, generator=gen))
    opt = torch.optim.Adam(vq.parameters(), lr=lr)
    used = torch.zeros(n, dtype=torch.bool)
    history, window = [], []
    for step in tqdm(range(steps), desc="autoencoder", file=sys.stderr):
        for g in opt.param_groups:
            g["lr"] = cosine_lr(step, steps, lr, warmup=50)
        xb = draw(batch, gen)
        loss, parts, idx = vq_losses(vq, xb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        used[idx.flatten()] = True
        window.append(parts)
        if restart_every and (step + 1) % restart_every == 0 and step + 1 < steps:
            dead = (~used).nonzero().flatten()
            if len(dead):
                with torch.no_grad():
                    z = latent_vectors(vq, xb)
                    vq.quantize.embedding.weight[dead] = z[torch.randint(len(z), (len(dead),), generator=gen)]
            used.zero_()
        if (step + 1) % log_every == 0 or step + 1 == steps:
            mean = {k: sum(w[k] for w in window) / len(window) for k in window[0]}
            history.append({"step": step + 1, **mean})
            log(f"autoencoder step {step + 1}: " + ", ".join(f"{k} {v:.4g}" for k, v in mean.items()))
            window = []
    return history


@torch.no_grad()
def encode_all(vq, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """The continuous latents of every image, in batches."""
    return torch.cat([vq.encode(x[i:i + batch]) for i in range(0, len(x), batch)])


@torch.no_grad()
def normalise_latents(vq, x: torch.Tensor) -> float:
    """Scale the latent space to unit standard deviation inside the weights; returns the std it had."""
    std = float(encode_all(vq, x).std())
    vq.quant_conv.weight /= std
    vq.quant_conv.bias /= std
    vq.quantize.embedding.weight /= std
    vq.post_quant_conv.weight *= std      # post_quant_conv(q / std) equals what it gave for q
    return std


def train_unet(unet, z: torch.Tensor, steps: int, batch: int, lr: float, ema_decay: float, gen,
               log_every: int = 100) -> tuple[dict, list]:
    abar = ldm_alphas_cumprod(**DEFAULT_SCHEDULE).float()
    ema = {k: v.detach().clone() for k, v in unet.state_dict().items()}
    opt = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=0.0)
    history, window = [], []
    for step in tqdm(range(steps), desc="unet", file=sys.stderr):
        for g in opt.param_groups:
            g["lr"] = cosine_lr(step, steps, lr, warmup=200)
        z0 = z[torch.randint(len(z), (batch,), generator=gen)]
        t = torch.randint(0, len(abar), (batch,), generator=gen)
        eps = torch.randn(z0.shape, generator=gen)
        a = abar[t].reshape(-1, 1, 1, 1)
        loss = (unet(a.sqrt() * z0 + (1 - a).sqrt() * eps, t) - eps).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        decay = min(ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for k, v in unet.state_dict().items():
                ema[k].lerp_(v, 1 - decay) if v.is_floating_point() else ema[k].copy_(v)
        window.append(loss.item())
        if (step + 1) % log_every == 0 or step + 1 == steps:
            history.append({"step": step + 1, "eps_mse": sum(window) / len(window)})
            log(f"unet step {step + 1}: eps_mse {history[-1]['eps_mse']:.4g}")
            window = []
    return ema, history


def schedule_buffers() -> dict[str, torch.Tensor]:
    """The diffusion schedule buffers a CompVis LatentDiffusion checkpoint carries (float32)."""
    abar = ldm_alphas_cumprod(**DEFAULT_SCHEDULE)
    abar_prev = torch.cat([abar.new_ones(1), abar[:-1]])
    betas = 1 - abar / abar_prev
    post_var = betas * (1 - abar_prev) / (1 - abar)
    buffers = {
        "betas": betas, "alphas_cumprod": abar, "alphas_cumprod_prev": abar_prev,
        "sqrt_alphas_cumprod": abar.sqrt(), "sqrt_one_minus_alphas_cumprod": (1 - abar).sqrt(),
        "log_one_minus_alphas_cumprod": (1 - abar).log(), "sqrt_recip_alphas_cumprod": abar.rsqrt(),
        "sqrt_recipm1_alphas_cumprod": (1 / abar - 1).sqrt(), "posterior_variance": post_var,
        "posterior_log_variance_clipped": torch.cat([post_var[1:2], post_var[1:]]).log(),
        "posterior_mean_coef1": betas * abar_prev.sqrt() / (1 - abar),
        "posterior_mean_coef2": (1 - abar_prev) * (1 - betas).sqrt() / (1 - abar),
    }
    return {k: v.float() for k, v in buffers.items()}


def commit_id() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return head + ("+uncommitted changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _digits_card(card: dict) -> tuple[str, str, str]:
    """Title, data bullet and gates table of the digits model's card."""
    from quality.digits import CONFIDENT

    g = card["gates"]
    classes = ", ".join(f"{d}: {c}" for d, c in enumerate(g["confident_classes_samples"]))
    data = f"""scikit-learn's bundled `load_digits` (1,797 images of 8x8, intensities 0-16), mapped to [-1, 1],
  upsampled 4x bilinearly to 32x32 and repeated over RGB (`data/digits.py`). Split by index in the file's order:
  train 0-{TRAIN_SIZE - 1} ({TRAIN_SIZE} images), test {TRAIN_SIZE}-1796 (297 images, `data=digits`). No augmentation
  (a flip or rotation would teach the prior the very ambiguity phase retrieval cannot resolve)."""
    table = f"""| VQ reconstruction PSNR, test split (297 images) | {g['recon_psnr_test']:.2f} dB |
| classifier accuracy on real test digits (logistic regression on 8x8 features, train split) | {100 * g['classifier_accuracy_test']:.1f} % |
| real test digits classified with confidence > {CONFIDENT} | {100 * g['confident_share_test']:.1f} % |
| prior samples classified with confidence > {CONFIDENT} ({g['samples']} samples, {g['sampler']}) | {100 * g['confident_share_samples']:.1f} % |

Confident samples per class ({classes})."""
    return "a miniature CompVis LDM trained on scikit-learn's digits", data, table


def _natural_card(card: dict) -> tuple[str, str, str]:
    """Title, data bullet and gates table of the natural-image model's card."""
    from data.natural import MIN_TEST_STD, SCALES, TEST_CROPS_PER_SOURCE, TEST_SOURCES, TRAIN_SOURCES

    g = card["gates"]
    data = f"""32x32 crops of the colour photographs that ship inside scikit-image ({', '.join(TRAIN_SOURCES)}:
  train) and scikit-learn ({', '.join(TEST_SOURCES)}: test), each resized to a short side of {', '.join(map(str, SCALES))} px
  (`data/natural.py`). Held out by source image. Training draws fresh crops every step (uniform source, scale and
  position) with left-right flips only (an up-down flip or rotation would teach the prior the very ambiguity phase
  retrieval cannot resolve); the UNet trains on a fixed pool of {card['unet']['pool']:,} such crops. Test set
  (`data=natural`): {TEST_CROPS_PER_SOURCE} crops of each test photograph with pixel std >= {MIN_TEST_STD}."""
    table = f"""| reconstruction PSNR, {2 * TEST_CROPS_PER_SOURCE} test crops / 256 train crops | {g['recon_psnr_test']:.2f} / {g['recon_psnr_train']:.2f} dB |
| denoiser eps-MSE (mean over sigma in 0.05 ... 5), test / train latents | {g['eps_mse_test']:.4f} / {g['eps_mse_train']:.4f} |
| power-spectrum slope, prior samples / real test crops ({g['samples']} samples, {g['sampler']}) | {g['spectral_slope_samples']:.2f} / {g['spectral_slope_test']:.2f} |"""
    return "a miniature CompVis LDM trained on crops of bundled photographs", data, table


def model_card(card: dict) -> str:
    title, data, table = CARDS[card["data"]](card)
    ae, un, name = card["autoencoder"], card["unet"], card["name"]
    return f"""# {name}: {title}

Written by `scripts/training/train_mini_ldm.py` ({card['command']}) on {card['date']}, commit {card['commit']},
{card['machine']}; {card['wall_minutes']:.1f} min in all.

- **Data**: {data}
- **Architecture**: `configs/model/{name}.yaml`, the CompVis modules of `models/ldm` at small widths: VQ-f4
  (ch {card['config']['first_stage']['ddconfig']['ch']}, ch_mult {card['config']['first_stage']['ddconfig']['ch_mult']}, {card['config']['first_stage']['n_embed']} codes of dimension 3; latents 3x8x8) and a
  UNet (model_channels {card['config']['unet']['model_channels']}, channel_mult {card['config']['unet']['channel_mult']}, attention at 4x4 and 2x2). Parameters: autoencoder {card['params']['first_stage']:,}, UNet {card['params']['unet']:,}.
- **Checkpoint**: `model.ckpt`, a Lightning-format dict (`state_dict` with `model.diffusion_model.*`,
  `first_stage_model.*` and the schedule buffers), loaded strictly by `models/ldm`; the UNet weights are the EMA
  (decay {un['ema_decay']}). The latent std before normalisation was {ae['latent_std']:.4g} (folded into the weights).
- **Training** (seed {card['seed']}, {card['threads']} CPU threads): autoencoder {ae['steps']} steps of batch {ae['batch']}, Adam lr {ae['lr']}
  (cosine), {ae['minutes']:.1f} min, final L1 {ae['history'][-1]['l1']:.4f}, MSE {ae['history'][-1]['mse']:.5f}; UNet {un['steps']} steps of batch
  {un['batch']}, AdamW lr {un['lr']} (warm-up, cosine), {un['minutes']:.1f} min, final eps-MSE {un['history'][-1]['eps_mse']:.4f}. Loss curves: `card.json`.

## Quality gates (recomputed from the shipped file by tests/test_{card['data']}.py)

| gate | value |
|---|---|
{table}

Samples: `docs/{name}_samples.png`.
"""


CARDS = {"digits": _digits_card, "natural": _natural_card}


class TrainingData:
    """What the trainer needs of a data set: a draw of training images per step, the images the latent scale and
    the UNet's latents come from, its gates and its model's name."""

    def __init__(self, name: str, pool: int, seed: int):
        self.name = name
        if name == "digits":
            self.model_name = "digits32ldm"
            self.x, _ = digits("train")
            self.train_size = TRAIN_SIZE
        else:
            from data.natural import TRAIN_SOURCES, random_crops

            self.model_name = "naturalldm"
            self.crops = lambda n, gen: random_crops(TRAIN_SOURCES, n, gen, flip=True)[0]
            # a pool of its own generator, so that the autoencoder's draws do not depend on its size
            self.x = self.crops(pool, torch.Generator().manual_seed(seed + 1))
            self.train_size = pool

    def draw(self, batch: int, gen, first: bool = False) -> torch.Tensor:
        if self.name == "digits":
            # the digits model was trained with exactly these draws: keep them
            pick = torch.randperm(len(self.x), generator=gen)[:batch] if first else \
                torch.randint(len(self.x), (batch,), generator=gen)
            return self.x[pick]
        return self.crops(batch, gen)

    def gates(self, model, samples: int, seed: int):
        if self.name == "digits":
            from quality.digits import gates
        else:
            from quality.natural import gates
        return gates(model, samples, seed=seed)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", choices=tuple(CARDS), default="digits")
    ap.add_argument("--config", default=None, help="model config (default: configs/model/<the data's model>.yaml)")
    ap.add_argument("--out", default=None, help="folder for model.ckpt, card.json, MODEL_CARD.md "
                                                "(default: weights/<the data's model>)")
    ap.add_argument("--grid", default=None, help="sample grid (default: docs/<the data's model>_samples.png); '' for none")
    ap.add_argument("--pool", type=int, default=16384, help="natural: training crops whose latents the UNet learns")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ae-steps", type=int, default=1000)
    ap.add_argument("--ae-batch", type=int, default=64)
    ap.add_argument("--ae-lr", type=float, default=2e-3)
    ap.add_argument("--restart-every", type=int, default=100)
    ap.add_argument("--unet-steps", type=int, default=5000)
    ap.add_argument("--unet-batch", type=int, default=128)
    ap.add_argument("--unet-lr", type=float, default=1e-3)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--gate-samples", type=int, default=256)
    ap.add_argument("--log-every", type=int, default=100, help="steps per logged (averaged) loss")
    args = ap.parse_args()
    for name in ("ae_steps", "unet_steps", "ae_batch", "unet_batch", "gate_samples", "threads", "log_every", "pool"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1")
    from omegaconf import OmegaConf

    t_start = time.time()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(args.seed)
    data = TrainingData(args.data, args.pool, args.seed)
    name = data.model_name
    config = args.config or str(ROOT / f"configs/model/{name}.yaml")
    out = Path(args.out or ROOT / f"weights/{name}")
    grid = str(ROOT / f"docs/{name}_samples.png") if args.grid is None else args.grid
    cfg = OmegaConf.to_container(OmegaConf.load(config), resolve=True)
    model = LatentDiffusion(cfg)
    vq, unet = model.first_stage_model, model.model.diffusion_model
    x_train = data.x

    t0 = time.time()
    vq.train()
    ae_hist = train_autoencoder(vq, data.draw, args.ae_steps, args.ae_batch, args.ae_lr, args.restart_every, gen,
                                args.log_every)
    vq.eval()
    latent_std = normalise_latents(vq, x_train)
    ae_minutes = (time.time() - t0) / 60
    z_train = encode_all(vq, x_train)
    log(f"latents: std {latent_std:.4g} folded into the weights; now mean {z_train.mean():.3f}, std {z_train.std():.3f}")

    t0 = time.time()
    unet.train()
    ema, unet_hist = train_unet(unet, z_train, args.unet_steps, args.unet_batch, args.unet_lr, args.ema, gen,
                                args.log_every)
    unet.load_state_dict(ema)
    unet_minutes = (time.time() - t0) / 60
    model.eval().requires_grad_(False)

    out.mkdir(parents=True, exist_ok=True)
    state = {f"model.diffusion_model.{k}": v for k, v in unet.state_dict().items()}
    state.update({f"first_stage_model.{k}": v for k, v in vq.state_dict().items()})
    state.update(schedule_buffers())
    torch.save({"state_dict": {k: v.contiguous() for k, v in state.items()}, "global_step": args.unet_steps,
                "epoch": 0}, out / "model.ckpt")

    # the gates on the file just written, through the loader every run uses
    from models.ldm import build_ldm
    loaded = build_ldm({**cfg, "ckpt_path": str(out / "model.ckpt")}, "cpu")
    g, drawn = data.gates(loaded, args.gate_samples, seed=args.seed)
    if grid:
        from torchvision.utils import save_image
        save_image(sample_grid(drawn[:128]), grid)
    card = {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix().split(str(ROOT) + "/")[-1], *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d"), "commit": commit_id(), "seed": args.seed, "threads": args.threads,
        "machine": f"{torch.get_num_threads()}-thread CPU, torch {torch.__version__}",
        "data": args.data, "name": name, "config": cfg, "train_size": data.train_size,
        "params": {"first_stage": sum(p.numel() for p in vq.parameters()),
                   "unet": sum(p.numel() for p in unet.parameters())},
        "autoencoder": {"steps": args.ae_steps, "batch": args.ae_batch, "lr": args.ae_lr, "commitment": COMMITMENT,
                        "restart_every": args.restart_every, "latent_std": latent_std, "minutes": ae_minutes,
                        "history": ae_hist},
        "unet": {"steps": args.unet_steps, "batch": args.unet_batch, "lr": args.unet_lr, "ema_decay": args.ema,
                 "pool": len(x_train), "minutes": unet_minutes, "history": unet_hist},
        "gates": g, "wall_minutes": (time.time() - t_start) / 60,
    }
    (out / "card.json").write_text(json.dumps(card, indent=1) + "\n")
    (out / "MODEL_CARD.md").write_text(model_card(card))
    log(f"wrote {out / 'model.ckpt'} ({(out / 'model.ckpt').stat().st_size / 2**20:.1f} MiB), card.json, MODEL_CARD.md; "
        f"gates: " + json.dumps({k: v for k, v in g.items() if k != 'sampler'}))


if __name__ == "__main__":
    main()
