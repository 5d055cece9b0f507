"""What a run samples with, built one way for the pipeline and every script: the device and its threads, the data set
(every image of the range opened), the model (in the run's dtype, compiled when asked) and the operator."""
from __future__ import annotations

import torch

from data import build_dataset
from models import build_model
from operators import build_operator
from pipeline.resolve import block
from sampler.precision import compile_model, set_tf32


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def prepare(cfg) -> tuple[torch.device, torch.dtype]:
    """The run's device and dtype; on a CPU torch's threads as model.cpu_threads says; TF32 as the sampler says."""
    device = resolve_device(cfg.device)
    if device.type == "cpu" and cfg.model.get("cpu_threads"):
        torch.set_num_threads(cfg.model.cpu_threads)
    set_tf32(cfg.sampler.precision.tf32)
    return device, getattr(torch, cfg.dtype)


def dataset_of(cfg):
    """The data set of a checked config, every image of the range opened now (a DataError names the first bad one)."""
    dataset = build_dataset(block(cfg.data), block(cfg.model), cfg.data.start_index, cfg.num_eval_images)
    dataset.verify()
    return dataset


def model_and_operator(cfg, device, dtype):
    """The model (dtype, compiled when sampler.precision.compile) and the operator for its images."""
    model = build_model(block(cfg.model), device).to(dtype)
    if cfg.sampler.precision.compile:
        compile_model(model)
    return model, build_operator(block(cfg.task), model.image_shape[-1])


def build(cfg, device=None, dtype=None):
    """(model, operator, dataset) of a checked config, for scripts: the pipeline's own pieces."""
    if device is None:
        device, dtype = prepare(cfg)
    dataset = dataset_of(cfg)
    model, operator = model_and_operator(cfg, device, dtype)
    return model, operator, dataset
