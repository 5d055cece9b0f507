"""Record ReSample's own loop (soominkwon/resample's ldm/models/diffusion/ddim.py and ldm_inverse/condition_methods.py,
run unchanged) on a mini LDM, call by call, into the fixture tests/fixtures/resample_reference.pt that
sampler/test_resample.py compares this tool's ReSample with (CI needs no network and no copy of their code).

    git clone https://github.com/soominkwon/resample /tmp/resample      # commit 3e332b2 recorded the fixture
    python scripts/studies/resample_reference.py --resample-repo /tmp/resample

Their module is loaded from the clone with stand-ins for what the loop does not use (skimage's PSNR, their image
helpers, einops) and a model adapter with the CompVis LatentDiffusion's attributes over this tool's LDM (the same
network, schedule, decoder and encoder). Their sampler pins its buffers to CUDA; the adapter keeps them on the CPU.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import types
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "resample_reference.pt"
STACK = ("model=digits32ldm", "sampler=digits32ldm_resample", "data=digits", "device=cpu")
FIRST = 10
STEPS, SEED, IMAGE = 40, 7, 0          # 40 DDIM steps: one pixel and one latent call in the loop, then the closing one


def _module(name: str, path: Path | None = None, **attrs):
    """A module under `name`: loaded from `path`, or a stand-in holding `attrs`."""
    if path is None:
        mod = types.ModuleType(name)
        mod.__dict__.update(attrs)
    else:
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    sys.modules[name] = mod
    return mod


def load_theirs(repo: Path):
    """Their DDIMSampler and PosteriorSampling, imported from the clone with stand-ins for unused imports."""
    saved = {k: sys.modules.get(k) for k in ("scripts", "scripts.utils", "utils")}
    _module("skimage")
    _module("skimage.metrics", peak_signal_noise_ratio=lambda *a, **k: 0.0)
    _module("scripts", __path__=[])
    _module("scripts.utils", clear_color=lambda x: x)
    _module("einops", repeat=None, rearrange=None)
    for pkg in ("ldm", "ldm.modules", "ldm.modules.diffusionmodules", "ldm.models", "ldm.models.diffusion"):
        _module(pkg, __path__=[])
    _module("ldm.util", instantiate_from_config=None)
    _module("ldm.modules.diffusionmodules.util", repo / "ldm" / "modules" / "diffusionmodules" / "util.py")
    ddim = _module("ldm.models.diffusion.ddim", repo / "ldm" / "models" / "diffusion" / "ddim.py")
    cond = _module("ldm_inverse.condition_methods", repo / "ldm_inverse" / "condition_methods.py")
    for k, v in saved.items():
        if v is not None:
            sys.modules[k] = v
    ddim.DDIMSampler.register_buffer = lambda self, name, attr: setattr(self, name, attr)     # CPU, not CUDA
    return ddim.DDIMSampler, cond.PosteriorSampling


class Adapter:
    """The attributes of CompVis's LatentDiffusion that ReSample's loop reads, over this tool's LDM."""

    def __init__(self, model):
        self.model = model
        abar = model.alphas_cumprod.float()
        betas = 1 - abar / torch.cat([abar.new_ones(1), abar[:-1]])
        self.num_timesteps, self.alphas_cumprod, self.betas = len(abar), abar, betas.float()
        self.alphas_cumprod_prev = torch.cat([abar.new_ones(1), abar[:-1]])
        self.device = torch.device("cpu")

    def apply_model(self, x, t, c):
        return self.model.eps(x, t.float())

    def decode_first_stage(self, z):
        with torch.no_grad():
            return self.model.decode(z)

    def differentiable_decode_first_stage(self, z):
        return self.model.decode(z)

    def encode_first_stage(self, x):
        return self.model.encode(x)


class Recorder:
    """Wraps the sampler's methods and torch's noise calls; every call's inputs and outputs, in order."""

    def __init__(self):
        self.calls = []

    def wrap(self, owner, name, kind, keep):
        original = getattr(owner, name)

        def wrapped(*args, **kwargs):
            out = original(*args, **kwargs)
            self.calls.append({"kind": kind, **keep(args, kwargs, out)})
            return out
        setattr(owner, name, wrapped)


def _d(t):
    return t.detach().clone() if isinstance(t, torch.Tensor) else t


def record(repo: Path) -> dict:
    from pipeline.build import build
    from pipeline.schema import compose
    from sampler.state import measurement_generator

    DDIMSampler, PosteriorSampling = load_theirs(repo)
    cfg = compose(*STACK)
    model, operator, dataset = build(cfg)
    gt = dataset[IMAGE][1][None]
    y = operator.measure(gt, generator=measurement_generator(cfg.seed, IMAGE))
    op = types.SimpleNamespace(forward=lambda x, **kw: operator(x))
    noiser = types.SimpleNamespace(__name__="gaussian")
    cond = PosteriorSampling(model=Adapter(model), operator=op, noiser=noiser)
    sampler = DDIMSampler(Adapter(model))
    sampler.make_schedule(ddim_num_steps=STEPS, ddim_eta=0.0, verbose=False)

    rec = Recorder()
    steps = {"n": 0}
    original_adamw = torch.optim.AdamW

    class CountingAdamW(original_adamw):
        def step(self, *a, **k):
            steps["n"] += 1
            return super().step(*a, **k)

    def optimisation(args, kwargs, out):
        n, steps["n"] = steps["n"], 0
        start = kwargs.get("z_init", kwargs.get("x_prime"))
        result = out[0] if isinstance(out, tuple) else out
        return {"start": _d(start), "out": _d(result), "steps": n}

    # the latent optimisation starts from z_init and moves it in place: keep a copy of the start before it runs
    def before_latent(original):
        def wrapped(self_, measurement, z_init, operator_fn, **kw):
            start = z_init.detach().clone()
            z, loss = original(measurement=measurement, z_init=z_init, operator_fn=operator_fn, **kw)
            n, steps["n"] = steps["n"], 0
            rec.calls.append({"kind": "latent", "start": start, "out": _d(z), "steps": n})
            return z, loss
        return wrapped

    latent = DDIMSampler.latent_optimization
    sampler.latent_optimization = types.MethodType(before_latent(
        lambda **kw: latent(sampler, **kw)), sampler)
    rec.wrap(sampler, "pixel_optimization", "pixel", optimisation)
    rec.wrap(sampler, "p_sample_ddim", "ddim", lambda a, k, out: {
        "x": _d(a[0]), "t": int(a[2][0]), "index": k["index"], "x_prev": _d(out[0]), "pred_x0": _d(out[1]),
        "pseudo_x0": _d(out[2])})
    rec.wrap(cond, "conditioning", "guidance", lambda a, k, out: {
        "x": _d(k["x_prev"]), "x0_hat": _d(k["x_0_hat"]), "scale": float(k["scale"].flatten()[0]),
        "out": _d(out[0]), "norm": float(out[1])})
    rec.wrap(sampler, "stochastic_resample", "resample", lambda a, k, out: {
        "x0": _d(k["pseudo_x0"]), "x_t": _d(k["x_t"]), "a": float(k["a_t"].flatten()[0]),
        "sigma": float(k["sigma"].flatten()[0]), "out": _d(out)})
    noise = []
    randn_like = torch.randn_like

    def recorded_randn_like(t, *a, **k):
        out = randn_like(t, *a, **k)
        noise.append(out.clone())
        return out

    torch.optim.AdamW, torch.randn_like = CountingAdamW, recorded_randn_like
    try:
        torch.manual_seed(SEED)
        x_T = torch.randn(1, *model.latent_shape)
        out, _ = sampler.resample_sampling(y, cond.conditioning, None, (1, *model.latent_shape),
                                           operator_fn=op.forward, x_T=x_T.clone())
    finally:
        torch.optim.AdamW, torch.randn_like = original_adamw, randn_like
    calls, rec.calls = rec.calls, []
    torch.manual_seed(SEED + 1)                      # another sample of the same posterior: how far apart two lie
    other, _ = sampler.resample_sampling(y, cond.conditioning, None, (1, *model.latent_shape), operator_fn=op.forward,
                                         x_T=torch.randn(1, *model.latent_shape))
    rec.calls = calls
    for c, n in zip([c for c in rec.calls if c["kind"] == "resample"], noise):
        c["noise"] = n
    # Adam amplifies round-off (torch's own AdamW from a start moved by 1e-7 ends 0.1 away after 2,000 steps), so
    # iterates are compared over their first FIRST steps; each call's own first FIRST steps, by their function
    for c in rec.calls:
        if c["kind"] == "latent":
            z, _ = latent(sampler, measurement=y, z_init=c["start"].clone(), operator_fn=op.forward, max_iters=FIRST)
            c["first"] = z.detach()
        elif c["kind"] == "pixel":
            c["first"] = DDIMSampler.pixel_optimization(sampler, y, c["start"].clone(), op.forward,
                                                        max_iters=FIRST).detach()
    return {"stack": STACK, "steps": STEPS, "seed": SEED, "image": IMAGE, "y": y, "x_T": x_T, "out": out.detach(),
            "other_seed_out": other.detach(),
            "calls": rec.calls, "source": "soominkwon/resample@3e332b2c867a144aeb18bab1d0fadcf3faa4964e"}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resample-repo", type=Path, required=True, help="a clone of soominkwon/resample")
    ap.add_argument("--out", type=Path, default=FIXTURE)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    fixture = record(args.resample_repo)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(fixture, args.out)
    kinds = [c["kind"] for c in fixture["calls"]]
    print(f"{args.out}: {len(kinds)} calls ({', '.join(f'{k} {kinds.count(k)}' for k in dict.fromkeys(kinds))}), "
          f"{args.out.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
