"""The trace of one sampled batch: every fact the loop, its hooks and the tracker produce, as entries tagged with the
image and particle they are about, so that one split gives each image its own."""
from __future__ import annotations

import torch


def _column(values, n: int) -> list:
    """A column of n values: a list, a (n,) tensor (read once), a (n, ...) tensor (kept as n tensors), or one value
    for every entry."""
    if isinstance(values, torch.Tensor):
        return values.tolist() if values.ndim == 1 else list(values.unbind(0))
    if isinstance(values, (list, tuple)):
        return list(values)
    return [values] * n


class Trace:
    """Entries (dicts) of a `kind`; an entry with an "image" is about that image (with a "particle", about one of its
    particles), an entry without one is the whole batch's. Times in the batch's entries are the batch's; `for_image`
    shares them out."""

    def __init__(self, entries: list[dict] | None = None):
        self.entries = [] if entries is None else entries

    def batch(self, kind: str, **facts) -> None:
        self.entries.append({"kind": kind, **facts})

    def images(self, kind: str, image_ids: list[int], **columns) -> None:
        """One entry per image of `image_ids`; each column holds one value per image (or one for all)."""
        cols = {k: _column(v, len(image_ids)) for k, v in columns.items()}
        self.entries.extend({"kind": kind, "image": g, **{k: c[i] for k, c in cols.items()}}
                         for i, g in enumerate(image_ids))

    def particles(self, kind: str, image_ids, particle_ids, **columns) -> None:
        """One entry per particle, in batch order; each column holds one value per particle (or one for all)."""
        image_ids, particle_ids = _column(image_ids, 0), _column(particle_ids, 0)
        cols = {k: _column(v, len(image_ids)) for k, v in columns.items()}
        self.entries.extend({"kind": kind, "image": g, "particle": p, **{k: c[i] for k, c in cols.items()}}
                         for i, (g, p) in enumerate(zip(image_ids, particle_ids)))

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.entries if e["kind"] == kind]

    def for_image(self, image: int, images_in_batch: int) -> "Trace":
        """This image's entries and the batch's, with every time of a batch entry (a key ending in time_s) divided by
        the batch's image count: one image's share of the batch's time, by one rule."""
        def share(entry):
            return {k: v / images_in_batch if k.endswith("time_s") and v is not None else v for k, v in entry.items()}

        return Trace([share(e) if "image" not in e else e for e in self.entries if e.get("image", image) == image])
