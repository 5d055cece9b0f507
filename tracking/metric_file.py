"""metric.json: rewritten atomically after each image so an interrupted run keeps every finished image."""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path


def _clean(obj):
    """JSON has no NaN/inf: store them as null rather than writing an unreadable file."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def write_json_atomic(path, data) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.fchmod(fd, 0o666 & ~umask)         # mkstemp's 0600 would hide the results from collaborators
        with os.fdopen(fd, "w") as f:
            json.dump(_clean(data), f, indent=1, allow_nan=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path) -> dict:
    with open(path) as f:
        return json.load(f)
