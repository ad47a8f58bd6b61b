"""What an alignment score is divided by: the published constant, a set's measured mean ceiling,
or each image's own measured ceiling (from a conversion's ``ceilings.json``)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from harmonization.metrics import HUMAN_CEILING, alignment_score

CEILING_CHOICES = ("constant", "mean", "per-image")
"""constant: 0.65753 (the 2022 ClickMe raters); mean: the set's mean split-half ceiling;
per-image: each image's Spearman divided by its own ceiling, then averaged."""


@dataclass(frozen=True)
class Denominator:
    """``kind`` (one of CEILING_CHOICES), ``value`` (the constant or mean; for per-image the mean,
    for the record), ``per_record`` (per-image: one ceiling per record, in reading order)."""

    kind: str = "constant"
    value: float = HUMAN_CEILING
    per_record: np.ndarray | None = None
    source: str | None = None

    def divide(self, values, positions=None) -> np.ndarray:
        """Per-image values over their ceiling (``positions``: their record indices); NaN where an
        image has no positive ceiling."""
        values = np.asarray(values, np.float64).ravel()
        if self.kind != "per-image":
            return values / self.value
        positions = np.arange(values.size) if positions is None else np.asarray(positions, np.int64)
        if positions.size and positions.max() >= len(self.per_record):
            raise ValueError(f"the data hold more records than the {len(self.per_record)} ceilings of {self.source}")
        ceilings = self.per_record[positions]
        usable = np.isfinite(ceilings) & (ceilings > 0)
        return np.where(usable, values / np.where(usable, ceilings, 1.0), np.nan)

    def alignment(self, spearman, positions=None) -> float:
        """The alignment score of per-image Spearman values (``positions``: their record indices)."""
        if self.kind != "per-image":
            return alignment_score(spearman, self.value)
        divided = self.divide(spearman, positions)
        divided = divided[np.isfinite(divided)]
        return float(divided.mean()) if divided.size else float("nan")

    def check_count(self, count: int) -> None:
        """Refuse per-image ceilings for data with another number of records."""
        if self.kind == "per-image" and count != len(self.per_record):
            raise ValueError(
                f"{self.source} lists {len(self.per_record)} images but the data hold {count} "
                "records: pass the shards of that conversion, all of them"
            )

    def describe(self) -> dict:
        """How results record their denominator."""
        described = {"kind": self.kind, "value": float(self.value), "source": self.source}
        if self.per_record is not None:
            described["records"] = int(len(self.per_record))
            described["measured"] = int(np.isfinite(self.per_record).sum())
        return described


def load_denominator(
    kind: str = "constant", ceilings: str | os.PathLike | None = None, shards: list[str] | None = None
) -> Denominator:
    """The denominator ``kind``; ``mean`` and ``per-image`` read ``ceilings`` (a conversion's
    ``ceilings.json``) for the records of ``shards`` (paths in reading order; default: all)."""
    if kind not in CEILING_CHOICES:
        raise ValueError(f"the ceiling must be one of {', '.join(CEILING_CHOICES)}, got {kind!r}")
    if kind == "constant":
        return Denominator()
    if ceilings is None:
        raise ValueError(f"the {kind} ceiling needs the ceilings file of the conversion (ceilings.json)")
    ceilings = os.fspath(ceilings)
    with open(ceilings, encoding="utf-8") as handle:
        try:
            table = json.load(handle)
        except json.JSONDecodeError as error:
            raise ValueError(f"{ceilings}: not JSON ({error})") from error
    if not isinstance(table, dict) or table.get("format") != "clickme2-ceilings":
        raise ValueError(f"{ceilings}: not a clickme2 ceilings file")
    listed = table["shards"]
    names = list(listed) if shards is None else [os.path.basename(path) for path in shards]
    missing = [name for name in names if name not in listed]
    if missing:
        raise ValueError(f"{ceilings} does not list shard {missing[0]}")
    values = np.array(
        [np.nan if r["ceiling"] is None else r["ceiling"] for name in names for r in listed[name]], np.float64
    )
    finite = values[np.isfinite(values)]
    if not finite.size:
        raise ValueError(f"{ceilings}: no image of these shards has a measured ceiling")
    mean = float(finite.mean())
    if kind == "mean":
        return Denominator("mean", mean, None, ceilings)
    return Denominator("per-image", mean, values, ceilings)
