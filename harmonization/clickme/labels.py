"""The classes present in ClickMe shards: what chance means for the data a model is trained on.

A network's head may be wider than the classes its data hold (``--num-classes 1000`` on a 4-class
test bed); chance is then 1/4, not 1/1000, and a guard that took it from the head would pass a
network that always answers one class. One pass over the labels (no image is decoded) gives it.
"""

from __future__ import annotations

import numpy as np

from harmonization.clickme.errors import ClickMeDataError
from harmonization.clickme.example import parse_example
from harmonization.clickme.paths import ShardPaths, resolve_shards
from harmonization.clickme.tfrecord import iter_records


def classes_present(paths_or_glob: ShardPaths, limit: int | None = None) -> set[int]:
    """The distinct labels of the ClickMe records in ``paths_or_glob``.

    Reading stops once ``limit`` distinct labels are seen (the head width: no more can count), so
    on data that hold every class it ends after a few batches' worth of records. Records that
    cannot be read are passed over: the training reader names them.
    """
    seen: set[int] = set()
    for path in resolve_shards(paths_or_glob, "ClickMe shard"):
        try:
            for payload in iter_records(path):
                try:
                    label = parse_example(payload).get("label")
                except (ClickMeDataError, ValueError):
                    continue
                if isinstance(label, np.ndarray) and label.size == 1 and label[0] >= 0:
                    seen.add(int(label[0]))
                    if limit is not None and len(seen) >= limit:
                        return seen
        except ClickMeDataError:
            continue
    return seen
