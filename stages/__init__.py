"""The sampler's optional stages, one package each (its declaration and record in __init__.py, its algorithm and
hook beside them): importing this package registers every one (sampler/stages.py has the protocol). A new stage is a
new package or module here and its test; nothing else changes."""
from __future__ import annotations

import importlib
import pkgutil

from sampler.stages import STAGES, ordered

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["STAGES", "ordered"]
