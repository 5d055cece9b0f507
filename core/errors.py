"""The project's error type and its small value checks: every module may raise it; only the entry point turns it
into one line on stderr and exit status 2."""
from __future__ import annotations

import math


class ToolError(Exception):
    """Bad input the user can fix; the message is one line that names it and says what to do."""


class ConfigError(ToolError, ValueError):
    """A bad flag or an impossible combination; the message names the flag and its valid range."""


class DataError(ToolError, ValueError):
    """A data problem the user must fix (missing folder, too few images, unreadable file)."""


def is_int(v) -> bool:
    """An int that is not a bool (YAML's true would pass isinstance(v, int))."""
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v) -> bool:
    """A finite int or float that is not a bool (inf and nan are no settings)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)
