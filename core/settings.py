"""The one way a setting is declared: its default, what values it takes (checked before any work, one line naming
the setting and its valid range) and a line of help; and the checker that walks a config against declarations."""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .errors import ConfigError, is_int, is_number


@dataclass(frozen=True)
class Setting:
    """default: its value when nobody sets it (None: it comes from a YAML group file); ok: whether a value is valid;
    what: the valid values in words ("an integer >= 1"); help: what it does, one line."""

    default: object
    ok: Callable[[object], bool]
    what: str
    help: str = ""

    def check(self, key: str, value) -> None:
        if not self.ok(value):
            raise ConfigError(f"{key}={_show(value)} is invalid: must be {self.what}")


def _show(value) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        return repr(value) if not value or any(c.isspace() for c in value) else value
    return str(value)


def _is_list(v) -> bool:
    return not isinstance(v, (str, bytes, Mapping)) and hasattr(v, "__len__") and hasattr(v, "__iter__")


def integer(low: int | None = None, high: int | None = None, default=None, help: str = "", off: int | None = None):
    """An integer in low … high (either end open when None); `off`, when given, is valid too (e.g. -1 = off)."""
    words = {(True, True): f"an integer in {low} … {high}", (True, False): f"an integer >= {low}",
             (False, True): f"an integer <= {high}", (False, False): "an integer"}[(low is not None, high is not None)]
    if off is not None:
        words += f" (or {off}: off)"
    return Setting(default, lambda v: is_int(v) and (v == off or ((low is None or v >= low)
                                                                   and (high is None or v <= high))), words, help)


def number(low: float | None = None, high: float | None = None, default=None, help: str = "",
           low_open: bool = False, high_open: bool = False):
    """A finite number in [low, high] (an end open when asked); never nan or inf."""
    lo = "" if low is None else (f"> {low:g}" if low_open else f">= {low:g}")
    hi = "" if high is None else (f"< {high:g}" if high_open else f"<= {high:g}")
    words = "a finite number" + (f" {lo}" if lo else "") + (" and" if lo and hi else "") + (f" {hi}" if hi else "")

    def ok(v):
        if not is_number(v):
            return False
        if low is not None and (v <= low if low_open else v < low):
            return False
        return high is None or (v < high if high_open else v <= high)
    return Setting(default, ok, words, help)


def boolean(default=None, help: str = ""):
    return Setting(default, lambda v: isinstance(v, bool), "true or false", help)


def choice(*options, default=None, help: str = ""):
    return Setting(default, lambda v: v in options, "one of " + ", ".join(map(str, options)), help)


def text(default=None, help: str = "", optional: bool = False):
    """A string (or null when optional)."""
    return Setting(default, lambda v: isinstance(v, str) or (optional and v is None),
                   "a string" + (" or null" if optional else ""), help)


def optional(setting: Setting, help: str | None = None) -> Setting:
    """The setting, or null (its default unless it has one)."""
    return Setting(setting.default, lambda v: v is None or setting.ok(v), f"null or {setting.what}",
                   setting.help if help is None else help)


def integer_list(low: int, high: int | None = None, default=None, help: str = "", off: int | None = None):
    """An integer in low … high (or `off`), or a non-empty list of them."""
    one = integer(low, high, off=off)
    each = integer(low, high)
    return Setting(default, lambda v: one.ok(v) or (_is_list(v) and len(v) > 0 and all(each.ok(x) for x in v)),
                   f"{one.what}, or a list of {each.what.replace('an integer', 'integers')}", help)


Schema = Mapping[str, "Setting | Schema"]


def defaults(schema: Schema) -> dict:
    """The config node of a schema's defaults (nested blocks as dicts)."""
    return {k: defaults(v) if isinstance(v, Mapping) else v.default for k, v in schema.items()}


def value(block, schema: Schema, key: str):
    """A group setting's value in a config block (a mapping, e.g. cfg.model or a checkpoint card's config): its own,
    else the one default its declaration gives. A group's YAML files need not spell out every setting that has one
    (a model without a rotated twin, a sampler without a precision lever); no code carries a default of its own."""
    if key in block and block[key] is not None:
        return block[key]
    default = schema[key].default
    if default is None and key not in block:
        raise KeyError(f"{key} is neither set nor has a declared default")
    return default


def check_settings(cfg, schema: Schema, prefix: str = "") -> None:
    """Every declared setting of cfg (a mapping) against its declaration; the first bad one is a ConfigError naming
    its dotted key. Keys the schema does not declare are Hydra's to refuse (unknown keys) or the owner's to check."""
    for key, decl in schema.items():
        if key not in cfg:
            continue
        value = cfg[key]
        if isinstance(decl, Mapping):
            if not isinstance(value, Mapping) and not hasattr(value, "keys"):
                raise ConfigError(f"{prefix}{key}={_show(value)} is invalid: must be a block of settings")
            check_settings(value, decl, f"{prefix}{key}.")
        else:
            decl.check(f"{prefix}{key}", value)


def help_lines(schema: Schema, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, valid values, help) of every setting, in declaration order."""
    out = []
    for key, decl in schema.items():
        if isinstance(decl, Mapping):
            out += help_lines(decl, f"{prefix}{key}.")
        else:
            out.append((f"{prefix}{key}", decl.what, decl.help))
    return out


class Block(Mapping):
    """A resolved settings block: read-only plain values (numbers, strings, tuples, nested blocks) read by attribute
    or key. What modules below the pipeline receive instead of a config node; pipeline/resolve.py makes them."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping):
        object.__setattr__(self, "_values", {str(k): _frozen(v) for k, v in values.items()})

    def __getattr__(self, key: str):
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key, value):
        raise AttributeError(f"a settings block is read-only ({key})")

    def __getitem__(self, key: str):
        return self._values[key]

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other) -> bool:
        return isinstance(other, Mapping) and dict(self.items()) == dict(other.items())

    def __hash__(self) -> int:
        return hash(tuple(self._values.items()))

    def __repr__(self) -> str:
        return f"Block({self._values!r})"


def _frozen(v):
    if isinstance(v, Block):
        return v
    if isinstance(v, Mapping) or hasattr(v, "keys"):
        return Block({k: v[k] for k in v.keys()})
    if _is_list(v):
        return tuple(_frozen(x) for x in v)
    return v


def resolve(values: Mapping, schema: Schema) -> Block:
    """A group's values (a mapping) resolved against its declarations: every declared setting its own value, else
    its declared default (a nested block likewise, an absent one all defaults); keys the schema does not declare are
    kept as they are (a model's architecture)."""
    out = {k: values[k] for k in values.keys()}
    for key, decl in schema.items():
        own = values[key] if key in values else None
        if isinstance(decl, Mapping):
            out[key] = resolve({} if own is None else own, decl)
        elif own is None:
            out[key] = decl.default
    return Block(out)
