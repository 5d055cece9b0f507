"""The trace of one sampled batch: every fact the loop, its hooks and the tracker produce, as rows tagged with the
image and particle they are about, so that one split gives each image its own."""
from __future__ import annotations

import torch


def _column(values, n: int) -> list:
    """A column of n values: a list, a (n,) tensor (read once), a (n, ...) tensor (kept as n row tensors), or one
    value for every row."""
    if isinstance(values, torch.Tensor):
        return values.tolist() if values.ndim == 1 else list(values.unbind(0))
    if isinstance(values, (list, tuple)):
        return list(values)
    return [values] * n


class Trace:
    """Rows (dicts) of a `kind`; a row with an "image" is about that image (with a "particle", about one of its
    particles), a row without one is the whole batch's. Times in batch rows are the batch's; `for_image` shares
    them out."""

    def __init__(self, rows: list[dict] | None = None):
        self.rows = [] if rows is None else rows

    def batch(self, kind: str, **facts) -> None:
        self.rows.append({"kind": kind, **facts})

    def images(self, kind: str, image_ids: list[int], **columns) -> None:
        """One row per image of `image_ids`; each column holds one value per image (or one for all)."""
        cols = {k: _column(v, len(image_ids)) for k, v in columns.items()}
        self.rows.extend({"kind": kind, "image": g, **{k: c[i] for k, c in cols.items()}}
                         for i, g in enumerate(image_ids))

    def particles(self, kind: str, image_ids, particle_ids, **columns) -> None:
        """One row per particle, in batch order; each column holds one value per particle (or one for all)."""
        image_ids, particle_ids = _column(image_ids, 0), _column(particle_ids, 0)
        cols = {k: _column(v, len(image_ids)) for k, v in columns.items()}
        self.rows.extend({"kind": kind, "image": g, "particle": p, **{k: c[i] for k, c in cols.items()}}
                         for i, (g, p) in enumerate(zip(image_ids, particle_ids)))

    def of(self, kind: str) -> list[dict]:
        return [r for r in self.rows if r["kind"] == kind]

    def for_image(self, image: int, images_in_batch: int) -> "Trace":
        """This image's rows and the batch's, with every time of a batch row (a key ending in time_s) divided by
        the batch's image count: one image's share of the batch's time, by one rule."""
        def share(row):
            return {k: v / images_in_batch if k.endswith("time_s") and v is not None else v for k, v in row.items()}

        return Trace([share(r) if "image" not in r else r for r in self.rows if r.get("image", image) == image])
