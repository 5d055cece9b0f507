"""Forward operators y = A(x) + noise, looked up by name from the task config."""
from __future__ import annotations

from .base import Operator
from .phase_retrieval import PhaseRetrieval

OPERATORS: dict[str, type[Operator]] = {"phase_retrieval": PhaseRetrieval}


def register_operator(name: str):
    def wrap(cls):
        OPERATORS[name] = cls
        return cls
    return wrap


def build_operator(task_cfg, resolution: int) -> Operator:
    kwargs = {k: v for k, v in dict(task_cfg.operator).items() if k != "name"}
    name = task_cfg.operator.name
    if name not in OPERATORS:
        raise ValueError(f"task.operator.name={name!r} is unknown; choose one of: {', '.join(OPERATORS)}")
    return OPERATORS[name](resolution=resolution, **kwargs)
