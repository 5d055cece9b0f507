"""The config error type and its small value checks; imports nothing of the project, so every module may use it."""
from __future__ import annotations

import math
import sys


class ConfigError(ValueError):
    """A bad flag or an impossible combination; the message is one line naming the flag and its valid range."""


def is_int(v) -> bool:
    """An int that is not a bool (YAML's true would pass isinstance(v, int))."""
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v) -> bool:
    """A finite int or float that is not a bool (inf and nan are no settings)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def fail(message: str, code: int = 2):
    """The command line's way out: one line on stderr, no traceback; 2 = bad input."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)
