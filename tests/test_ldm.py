"""Tests for models/ldm: parity with the CompVis reference fixtures, checkpoint handling, denoiser, gradients."""

from __future__ import annotations

import argparse
import copy
import json
import math
from pathlib import Path

import pytest
import torch

from models.base import LatentModel
from models.ldm import CheckpointError, CheckpointNotFoundError, LatentDiffusion, build_ldm
from models.ldm import model as ldm_model
from models.ldm.checkpoint import load_ldm_checkpoint
from models.ldm.denoiser import VPDenoiser, ldm_alphas_cumprod
from models.ldm.unet import AttentionBlock, CrossAttention, UNetModel
from models.ldm.vq import VQModel

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FIXTURES = SHARED / "fixtures"
UNET, VQ, COND = "model.diffusion_model.", "first_stage_model.", "cond_stage_model."
TOL = 1e-4
# Tiny models are built with random_init_ok=true; the once-per-process warning is tested explicitly below.
pytestmark = [pytest.mark.filterwarnings("ignore:models.ldm.*RANDOM weights:UserWarning"),
              pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def fx():
    path = FIXTURES / "ldm_parity_tiny.pt"
    if not path.is_file():
        pytest.skip(f"reference fixtures not found at {path} (needs the shared/ folder next to the checkout)")
    return torch.load(path, map_location="cpu", weights_only=True)


def strip(state: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def tiny_cfg(fx, cond: bool = True, **overrides) -> dict:
    """Tiny LatentDiffusion config from the fixture entries (VQ resolution 64 -> 16x16 latents = UNet size)."""
    first_stage = copy.deepcopy(fx["vq_f4_tiny"]["config"])
    first_stage["ddconfig"]["resolution"] = 64  # only sets latent/image shape: no VQ attention resolutions
    entry = fx["unet_cin_tiny" if cond else "unet_ffhq_tiny"]
    cfg = dict(name="ldm", ckpt_path=None, random_init_ok=True, c_noise="vp", channels_last=False,
               scale_factor=1.0, unet=dict(entry["config"]), first_stage=first_stage,
               cond_stage=dict(**entry["class_embed"], null_class=1000) if cond else None)
    cfg.update(overrides)
    return cfg


def tiny_state(fx, cond: bool = True) -> dict:
    entry = fx["unet_cin_tiny" if cond else "unet_ffhq_tiny"]
    return {**entry["state_dict"], **fx["vq_f4_tiny"]["state_dict"]}


def tiny_model(fx, cond: bool = True, **overrides) -> LatentDiffusion:
    model = build_ldm(tiny_cfg(fx, cond, **overrides), "cpu")
    # The model is frozen, so load through a plain strict load of the full-prefix names.
    model.load_state_dict(tiny_state(fx, cond), strict=True)
    return model


# ----------------------------------------------------------------------------------------------- parity

@pytest.mark.parametrize("name", ["unet_ffhq_tiny", "unet_cin_tiny"])
def test_unet_parity(fx, name):
    entry = fx[name]
    unet = UNetModel(**entry["config"]).eval()
    unet.load_state_dict(strip(entry["state_dict"], UNET), strict=True)
    context = None
    if "class_embed" in entry:
        table = entry["state_dict"][COND + "embedding.weight"]
        assert table.shape == (entry["class_embed"]["n_classes"], entry["class_embed"]["embed_dim"])
        context = table[entry["inputs"]["class_label"]][:, None, :]
    x, t = entry["inputs"]["x"], entry["inputs"]["timesteps"]
    with torch.no_grad():
        assert (unet(x, t, context) - entry["output"]).abs().max() <= TOL
        unet.to(memory_format=torch.channels_last)
        out_cl = unet(x.contiguous(memory_format=torch.channels_last), t, context)
    assert (out_cl - entry["output"]).abs().max() <= TOL


def test_attention_head_layouts():
    """Legacy QKV layout (per head: q|k|v) and cross-attention's (h d) layout, checked head by head.

    The tiny-UNet parity alone barely sees the head order (random weights give near-uniform attention), so
    this compares against an explicit per-head loop with peaked attention."""
    gen = torch.Generator().manual_seed(0)
    block = AttentionBlock(64, num_head_channels=16).eval()  # 4 heads
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    x = torch.randn(2, 64, 5, 3, generator=gen)
    with torch.no_grad():
        qkv = block.qkv(block.norm(x.reshape(2, 64, 15)))
        heads = []
        for i in range(4):
            q, k, v = (qkv[:, 48 * i + 16 * j: 48 * i + 16 * (j + 1)] for j in range(3))
            w = torch.softmax(torch.einsum("bct,bcs->bts", q, k) / 4.0, dim=-1)
            heads.append(torch.einsum("bts,bcs->bct", w, v))
        expected = x + block.proj_out(torch.cat(heads, dim=1)).reshape(2, 64, 5, 3)
        assert (block(x) - expected).abs().max() < 1e-5
        assert (block(x.contiguous(memory_format=torch.channels_last)) - expected).abs().max() < 1e-5

        attn = CrossAttention(32, context_dim=8, heads=4, dim_head=8).eval()
        for p in attn.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
        x, ctx = torch.randn(2, 6, 32, generator=gen), torch.randn(2, 3, 8, generator=gen)
        q, k, v = attn.to_q(x), attn.to_k(ctx), attn.to_v(ctx)
        outs = []
        for i in range(4):
            sl = slice(8 * i, 8 * (i + 1))
            w = torch.softmax(q[..., sl] @ k[..., sl].transpose(1, 2) / math.sqrt(8), dim=-1)
            outs.append(w @ v[..., sl])
        assert torch.allclose(attn(x, ctx), attn.to_out(torch.cat(outs, dim=-1)), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("cond", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_latent_diffusion_eps_parity(fx, cond, channels_last):
    """Whole-model wiring: eps uses the null-class context (cin) and reproduces the reference output."""
    entry = fx["unet_cin_tiny" if cond else "unet_ffhq_tiny"]
    model = tiny_model(fx, cond, channels_last=channels_last)
    assert isinstance(model, LatentModel)
    assert model.latent_shape == (3, 16, 16) and model.image_shape == (3, 64, 64)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    with torch.no_grad():
        out = model.eps(entry["inputs"]["x"], entry["inputs"]["timesteps"])
    assert (out - entry["output"]).abs().max() <= TOL


def test_vq_parity(fx):
    entry = fx["vq_f4_tiny"]
    vq = VQModel(**entry["config"]).eval()
    vq.load_state_dict(strip(entry["state_dict"], VQ), strict=True)
    image, latent = entry["inputs"]["image"], entry["inputs"]["latent"]
    with torch.no_grad():
        assert (vq.encode(image) - entry["outputs"]["encoded"]).abs().max() <= TOL
        assert torch.equal(vq.quantize.indices(latent), entry["outputs"]["code_indices"])
        assert (vq.decode(latent) - entry["outputs"]["decoded"]).abs().max() <= TOL
        vq.decoder.to(memory_format=torch.channels_last)
        decoded_cl = vq.decode(latent.contiguous(memory_format=torch.channels_last))
    assert (decoded_cl - entry["outputs"]["decoded"]).abs().max() <= TOL


def test_code_search_in_codebook_chunks_is_the_exact_nearest_code_first_on_ties():
    from models.ldm.vq import VectorQuantizer

    torch.manual_seed(0)
    vq = VectorQuantizer(n_embed=100, embed_dim=3, chunk_codes=16)     # 7 chunks, the last one short
    book = torch.randn(100, 3)
    book[57] = book[9]           # a tie across chunks: the first index must win
    book[30] = book[31]          # and one inside a chunk
    vq.embedding.weight.data.copy_(book)
    z = torch.randn(2, 3, 5, 6)
    z[0, :, 0, 0], z[1, :, 4, 5] = book[9], book[31]
    want = torch.cdist(z.permute(0, 2, 3, 1).reshape(-1, 3).double(), book.double()).argmin(1).view(2, 5, 6)
    got = vq.indices(z)
    assert torch.equal(got, want)
    assert got[0, 0, 0] == 9 and got[1, 4, 5] == 30
    # the chunk size changes nothing
    vq.chunk_codes = 100
    assert torch.equal(vq.indices(z), got)


def test_compile_targets_the_unet_not_the_sigma_taking_wrapper(monkeypatch):
    from sampler.precision import compile_model

    compiled = []
    monkeypatch.setattr(torch, "compile", lambda fn: compiled.append(fn.__name__) or fn)

    class Ldm:
        def decode(self, z): ...
        def eps(self, x, t): ...
        def denoise(self, z, sigma): ...

    class TwoMode:
        def decode(self, z): ...
        def denoise(self, z, sigma): ...

    compile_model(Ldm())
    compile_model(TwoMode())
    # a float sigma would be a new guard, and a recompilation, at every annealing step
    assert compiled == ["decode", "eps", "decode", "denoise"]


# ----------------------------------------------------------------------------------------- full size

@pytest.mark.parametrize("config, key", [("ffhq256ldm", "ffhq256ldm"), ("imagenet256ldm", "imagenet256ldm_cin256v2")])
def test_full_size_parameter_names_and_shapes(config, key):
    keys_file = FIXTURES / "ldm_checkpoint_keys.json"
    if not keys_file.is_file():
        pytest.skip(f"{keys_file} not found (needs the shared/ folder next to the checkout)")
    from omegaconf import OmegaConf

    reference = json.loads(keys_file.read_text())[key]
    model = LatentDiffusion(OmegaConf.load(REPO / "configs" / "model" / f"{config}.yaml"), meta=True)
    ours = {name: list(t.shape) for name, t in model.state_dict().items()}
    assert ours == reference["state_dict_shapes"]
    assert sum(p.numel() for p in model.model.diffusion_model.parameters()) == reference["unet_params"]
    assert model.latent_shape == (3, 64, 64) and model.image_shape == (3, 256, 256)


# ------------------------------------------------------------------------------------------ gradients

def test_decode_gradient_is_straight_through(fx):
    """d loss(decode(z)) / dz equals the gradient of the decoder evaluated at the quantised latent q(z)."""
    model = tiny_model(fx, cond=False).double()
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(1, *model.latent_shape, generator=gen, dtype=torch.float64) * 0.2
    y = torch.rand(1, *model.image_shape, generator=gen, dtype=torch.float64)

    def loss(x):  # phase-retrieval-like measurement loss ||(|F x|) - y||^2
        return ((torch.fft.fft2(x).abs() - y) ** 2).sum()

    fs = model.first_stage_model
    with torch.no_grad():
        q = fs.quantize.lookup(fs.quantize.indices(z)).double()
        assert torch.allclose(model.decode(z), fs.decoder(fs.post_quant_conv(q)))  # forward really quantises
    zz = z.clone().requires_grad_(True)
    grad = torch.autograd.grad(loss(model.decode(zz)), zz)[0]

    direction = torch.randn(z.shape, generator=gen, dtype=torch.float64)
    h = 1e-6

    def post_quant_path(w):  # q(z) + (w - z): the straight-through surrogate, smooth in w
        with torch.no_grad():
            return loss(fs.decoder(fs.post_quant_conv(q + (w - z))))

    fd = (post_quant_path(z + h * direction) - post_quant_path(z - h * direction)) / (2 * h)
    ad = (grad * direction).sum()
    assert ad.abs() > 1e-3  # a non-trivial gradient reaches z
    assert torch.isclose(ad, fd, rtol=1e-5, atol=1e-8), (ad.item(), fd.item())
    # The gradient is taken at q(z), not at z: the decoder gradient at z itself differs.
    zg = z.clone().requires_grad_(True)
    grad_at_z = torch.autograd.grad(loss(fs.decoder(fs.post_quant_conv(zg))), zg)[0]
    assert not torch.allclose(grad_at_z, grad, rtol=1e-3)


# ----------------------------------------------------------------------------------------- checkpoint

def schedule_buffers(timesteps: int = 1000) -> dict:
    abar = ldm_alphas_cumprod().float()
    betas = 1 - abar / torch.cat([torch.ones(1), abar[:-1]])
    return {"betas": betas, "alphas_cumprod": abar, "alphas_cumprod_prev": torch.cat([torch.ones(1), abar[:-1]]),
            "sqrt_alphas_cumprod": abar.sqrt(), "sqrt_one_minus_alphas_cumprod": (1 - abar).sqrt(),
            "log_one_minus_alphas_cumprod": (1 - abar).log(), "sqrt_recip_alphas_cumprod": abar.rsqrt(),
            "sqrt_recipm1_alphas_cumprod": (1 / abar - 1).sqrt(), "posterior_variance": betas,
            "posterior_log_variance_clipped": betas.clamp_min(1e-20).log(), "posterior_mean_coef1": betas,
            "posterior_mean_coef2": betas, "logvar": torch.zeros(timesteps)}


def write_lightning_ckpt(path: Path, fx, tamper: bool = False, with_objects: bool = False, cond: bool = True) -> Path:
    state = {**tiny_state(fx, cond=cond), **schedule_buffers()}
    state["model_ema.decay"] = torch.tensor(0.9999)
    state["model_ema.num_updates"] = torch.tensor(12, dtype=torch.int)
    state["model_ema.diffusion_modeltime_embed0weight"] = torch.zeros(3)
    if tamper:
        state["alphas_cumprod"] = state["alphas_cumprod"].clone()
        state["alphas_cumprod"][500] += 1e-3
    ckpt = {"state_dict": state, "epoch": 3, "global_step": 1234}
    if with_objects:  # Lightning files may pickle such objects, which weights_only=True refuses
        ckpt["hparams"] = argparse.Namespace(lr=1e-4)
    torch.save(ckpt, path)
    return path


@pytest.mark.parametrize("with_objects", [False, True])
def test_lightning_checkpoint_loads_strictly(fx, tmp_path, with_objects, capsys):
    path = write_lightning_ckpt(tmp_path / "model.ckpt", fx, with_objects=with_objects)
    model = build_ldm(tiny_cfg(fx, cond=True, ckpt_path=str(path), random_init_ok=False), "cpu")
    out = capsys.readouterr().out
    assert "loaded" in out and ("weights_only=False" in out) == with_objects
    assert not any(p.requires_grad for p in model.parameters())
    assert all(p.device.type == "cpu" for p in model.parameters())
    entry = fx["unet_cin_tiny"]
    with torch.no_grad():
        assert (model.eps(entry["inputs"]["x"], entry["inputs"]["timesteps"]) - entry["output"]).abs().max() <= TOL
        # The denoiser wires the UNet as D(z, s) = z - s * eps(z / sqrt(1 + s^2), c_noise(s)).
        z, sigma = entry["inputs"]["x"], torch.tensor([0.5, 3.0])
        c = model.denoiser.c_noise(sigma)
        expected = z - sigma[:, None, None, None] * model.eps(z / (1 + sigma[:, None, None, None] ** 2).sqrt(), c)
        assert torch.allclose(model.denoise(z, sigma), expected, atol=1e-6)


def test_checkpoint_schedule_mismatch_raises(fx, tmp_path):
    path = write_lightning_ckpt(tmp_path / "model.ckpt", fx, tamper=True)
    model = LatentDiffusion(tiny_cfg(fx), meta=True)
    with pytest.raises(CheckpointError, match="alphas_cumprod"):
        load_ldm_checkpoint(model, path, {"linear_start": 0.0015, "linear_end": 0.0195, "timesteps": 1000})


def test_checkpoint_architecture_mismatch_raises(fx, tmp_path):
    path = write_lightning_ckpt(tmp_path / "model.ckpt", fx)
    with pytest.raises(CheckpointError, match="strict"):  # cin weights into the ffhq-structured tiny model
        build_ldm(tiny_cfg(fx, cond=False, ckpt_path=str(path)), "cpu")


def test_missing_or_corrupt_checkpoint_messages(fx, tmp_path):
    missing = tmp_path / "nowhere" / "model.ckpt"
    with pytest.raises(CheckpointNotFoundError) as info:
        build_ldm(tiny_cfg(fx, cond=False, ckpt_path=str(missing), random_init_ok=True), "cpu")
    assert isinstance(info.value, FileNotFoundError)
    assert str(missing) in str(info.value) and "bash scripts/download_checkpoints.sh ffhq" in str(info.value)
    with pytest.raises(CheckpointNotFoundError, match="download_checkpoints.sh imagenet"):
        build_ldm(tiny_cfg(fx, cond=True, ckpt_path=None, random_init_ok=False), "cpu")
    for name, payload in [("garbage.ckpt", b"not a checkpoint at all"), ("truncated.ckpt", None)]:
        bad = tmp_path / name
        if payload is None:
            write_lightning_ckpt(bad, fx)
            bad.write_bytes(bad.read_bytes()[:5000])
        else:
            bad.write_bytes(payload)
        with pytest.raises(CheckpointError, match="corrupt"):
            build_ldm(tiny_cfg(fx, cond=True, ckpt_path=str(bad)), "cpu")


def test_random_init_warns(fx, monkeypatch):
    monkeypatch.setattr(ldm_model, "_warned_random", False)
    with pytest.warns(UserWarning, match="RANDOM weights"):
        build_ldm(tiny_cfg(fx, cond=False), "cpu")


# ------------------------------------------------------------------------------------------- denoiser

def test_denoiser_formula_with_stub_network():
    den = VPDenoiser(c_noise="vp")
    seen = {}

    def eps_fn(x, t):
        seen["x"], seen["t"] = x, t
        return torch.sin(x) + 1e-3 * t[:, None, None, None]

    z = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(1))
    for sigma in [0.7, torch.tensor(0.7), torch.tensor([0.1, 1.0, 10.0])]:
        s = torch.as_tensor(sigma).expand(3).reshape(-1, 1, 1, 1)
        out = den(eps_fn, z, sigma)
        x_in = z / (1 + s ** 2).sqrt()
        t = 999 * ((0.1 ** 2 + 2 * 19.9 * torch.log(1 + s.flatten() ** 2)).sqrt() - 0.1) / 19.9
        assert torch.allclose(seen["x"], x_in) and torch.allclose(seen["t"], t)
        assert torch.allclose(out, z - s * (torch.sin(x_in) + 1e-3 * t[:, None, None, None]), atol=1e-6)
    assert math.isclose(den.c_noise(torch.tensor(1.0)).item(), 258.70, abs_tol=0.05)


def test_c_noise_vp_vs_alphas_cumprod():
    vp, ac = VPDenoiser(c_noise="vp"), VPDenoiser(c_noise="alphas_cumprod")
    abar = ldm_alphas_cumprod()
    sigma_t = ((1 - abar) / abar).sqrt().float()
    # The checkpoint schedule maps its own sigma_t back to t exactly (up to float32 rounding).
    for t in [0, 1, 250, 500, 998, 999]:
        assert abs(ac.c_noise(sigma_t[t : t + 1]).item() - t) < 1e-2
    sigmas = torch.logspace(-2, 1, 200)
    t_vp, t_ac = vp.c_noise(sigmas), ac.c_noise(sigmas)
    assert (t_vp.diff() > 0).all() and (t_ac.diff() >= 0).all()
    assert (t_ac[sigmas > sigma_t[0] * 1.01].diff() > 0).all()
    assert t_ac[0] == 0  # below the schedule's smallest sigma the timestep is clamped to 0
    gap = (t_vp - t_ac).abs()
    # Close but different: within ~5 steps near sigma = 1, up to ~60 steps (of 1000) elsewhere in [0.01, 10].
    assert gap[(sigmas - 1).abs().argmin()] < 6
    assert 30 < gap.max() < 70
    with pytest.raises(ValueError):
        VPDenoiser(c_noise="karras")
