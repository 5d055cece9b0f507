"""End to end on the real-LDM path: a tiny Lightning-format checkpoint through posterior_sample.py."""
import json

import pytest
import torch

from tests.conftest import ROOT, SHARED, cli


def _overrides(prefix: str, cfg: dict) -> list[str]:
    out = []
    for k, v in cfg.items():
        if isinstance(v, dict):
            out += _overrides(f"{prefix}.{k}", v)
        else:
            out.append(f"{prefix}.{k}={json.dumps(v).replace(' ', '')}")
    return out


def test_tiny_checkpoint_runs_through_entry_point(tmp_path, shared):
    from tests.test_ldm import write_lightning_ckpt

    fx = torch.load(SHARED / "fixtures" / "ldm_parity_tiny.pt", map_location="cpu", weights_only=True)
    ckpt = write_lightning_ckpt(tmp_path / "model.ckpt", fx, cond=False)
    unet = fx["unet_ffhq_tiny"]["config"]
    first = fx["vq_f4_tiny"]["config"]
    first["ddconfig"]["resolution"] = 64          # 16x16 latents, the tiny UNet's size
    args = [
        "model=ffhq256ldm", f"model.ckpt_path={ckpt}", "sampler=langevin", "data=demo-ffhq",
        f"data.root={shared / 'data' / 'demo-ffhq'}", "data.resolution=64",
        *_overrides("model.unet", unet), *_overrides("model.first_stage", first),
        "--particle_num", "2", "--num_eval_images", "1", "sampler.annealing.num_steps=3",
        "sampler.mcmc.num_steps=2", f"save_dir={tmp_path}", "name=tiny", "save_images=false",
        "orientation.elbo_evals=4",                    # the checkpoint's path is under test here, not the ELBO
    ]
    r = cli(*args, cwd=ROOT)                        # the command line, in this process
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((tmp_path / "tiny" / "metric.json").read_text())
    im = m["images"][0]
    assert im["name"] == "00000.png" and len(im["particles"]) == 2
    assert [s["t"] for s in im["steps"]] == [1000, 667, 333]
    assert m["config"]["model"]["unet"]["model_channels"] == 32
    # the entry point ran the checkpoint's model: the library's run of the same settings gives the same particles
    import pipeline.run as pipeline_run
    from tests.conftest import compose

    same = pipeline_run.run(compose(*[a for a in args if "=" in a and "name=" not in a], "particle_num=2",
                                    "num_eval_images=1", "name=again"))
    assert [p["measurement_loss"] for p in same["images"][0]["particles"]] == pytest.approx(
        [p["measurement_loss"] for p in im["particles"]], rel=1e-4)


def test_missing_checkpoint_names_download_command(tmp_path, shared):
    r = cli("model=ffhq256ldm", "sampler=langevin", "data=demo-ffhq", f"data.root={shared / 'data' / 'demo-ffhq'}",
            f"model.ckpt_path={tmp_path / 'none.ckpt'}", f"save_dir={tmp_path}", cwd=ROOT)
    assert r.returncode == 2
    assert "download_checkpoints.sh ffhq" in r.stderr and "Traceback" not in r.stderr
    assert str(tmp_path / "none.ckpt") in r.stderr
