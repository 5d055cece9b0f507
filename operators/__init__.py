"""Forward operators y = A(x) + noise, looked up by name from the task config; each declares its own settings. An
operator is a module of this package with a subclass of Operator that names itself (`name = "..."`): importing the
package finds it, so adding one touches its module, its task YAML and its test."""
from __future__ import annotations

import importlib
import pkgutil

from core.errors import check
from core.settings import check_settings, choice

from .base import Operator

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")


def _named(cls) -> list:
    return [c for sub in cls.__subclasses__() for c in ([sub] if sub.__dict__.get("name") else []) + _named(sub)]


OPERATORS: dict[str, type[Operator]] = {c.name: c for c in _named(Operator)}
from .phase_retrieval import PhaseRetrieval  # noqa: E402  (the mission's operator, imported by name elsewhere)


def check_config(task_cfg) -> None:
    """task.operator: a registered operator and its own settings (each class's SETTINGS)."""
    op = task_cfg.get("operator")
    check(op is not None and op.get("name") in OPERATORS,
          f"task.operator.name={None if op is None else op.get('name')} is invalid: must be one of "
          f"{', '.join(OPERATORS)}")
    settings = OPERATORS[op.name].SETTINGS
    unknown = sorted(set(op) - set(settings) - {"name"})
    check(not unknown, f"task.operator.{unknown[0] if unknown else ''} is no setting of {op.name}: its settings are "
                       f"{', '.join(settings)}")
    check_settings(op, {"name": choice(*OPERATORS), **settings}, "task.operator.")


def build_operator(task_cfg, resolution: int) -> Operator:
    """The operator of a checked task config, for images of side `resolution`."""
    kwargs = {k: v for k, v in dict(task_cfg.operator).items() if k != "name"}
    return OPERATORS[task_cfg.operator.name](resolution=resolution, **kwargs)
