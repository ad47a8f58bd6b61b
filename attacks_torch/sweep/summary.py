"""A finished model of the sweep merged: its batches into results.csv, their summary into summary.json."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from attacks_torch.stimuli import Stimuli
from attacks_torch.sweep.config import SweepConfig
from attacks_torch.sweep.specs import ModelSpec
from attacks_torch.sweep.store import ModelFolder, read_all_batches
from attacks_torch.sweep.tables import MEASURES
from harmonization.clickme2.denominator import Denominator
from harmonization.metrics import summarize


def summarize_rows(rows: Sequence[dict[str, str]]) -> dict[str, Any]:
    """Counts, measured accuracy and ``summarize`` (mean, sem, ...) of each measure over fooled images."""
    fooled = [r for r in rows if r["fooled"] == "True"]
    n_attacked = sum(r["clean_correct"] == "True" for r in rows)
    summary: dict[str, Any] = {
        "n_images": len(rows),
        "n_attacked": n_attacked,
        "n_fooled": len(fooled),
        "accuracy": n_attacked / len(rows) if rows else math.nan,
    }
    for measure in MEASURES:
        summary[measure] = summarize([float(r[measure]) for r in fooled])
    return summary


def over_ceiling(rows: Sequence[dict[str, str]], denominator: Denominator | None) -> dict[str, Any]:
    """The fooled images' alignment divided by the human ceiling, and which ceiling (none: {})."""
    if denominator is None:
        return {}
    fooled = [i for i, r in enumerate(rows) if r["fooled"] == "True"]
    values = denominator.divide([float(rows[i]["alignment"]) for i in fooled], fooled)
    return {"alignment_over_ceiling": summarize(values), "denominator": denominator.describe()}


def merge(
    spec: ModelSpec,
    config: SweepConfig,
    stimuli: Stimuli,
    folder: ModelFolder,
    fp: dict[str, Any],
    timing: dict[str, float],
    denominator: Denominator | None = None,
) -> None:
    """Write the model's results.csv from its batch files, then its summary.json."""
    rows = read_all_batches(folder, spec.label, stimuli.ids, config.batch_size)
    folder.write_results(rows)
    folder.write_summary(
        {
            "model": spec.label,
            "spec": spec.spec,
            "checkpoint": spec.checkpoint,
            "attack": config.attack,
            "norm": config.norm,
            "status": "done",
            **summarize_rows(rows),
            "num_classes": folder.read_model_info()["num_classes"],
            "data_classes": int(stimuli.labels.unique().numel()),
            "config": fp,
            "timing": timing,
            **over_ceiling(rows, denominator),
        }
    )
