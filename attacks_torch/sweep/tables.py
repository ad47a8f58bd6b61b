"""The sweep's tables: the columns and keys of each file of a sweep folder, and how a CSV or JSON
file of them is written (numbers exactly) and read back (a :class:`SweepError` naming a file that
is not what it should be). ``store.py`` says where each file lives."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from attacks_torch.sweep.errors import SweepError

BATCH_COLUMNS = (
    "model",
    "image_id",
    "label",
    "clean_pred",
    "clean_correct",
    "fooled",
    "eps",
    "l2",
    "linf",
    "alignment",
    "attack",
    "norm",
)
HUMAN_MEASURES = ("human_alignment", "human_alignment_logprob")
"""Per-image Spearman of the logit and the log-probability evaluation saliency with the human map
(``attacks_torch.human``); empty where not measured."""
RESULT_COLUMNS = (*BATCH_COLUMNS[:10], *HUMAN_MEASURES, *BATCH_COLUMNS[10:])
"""results.csv: an attack batch's columns with the human alignment beside the adversarial alignment
(a results.csv with BATCH_COLUMNS, written before human alignment, reads with empty human cells)."""
MEASURES = ("eps", "l2", "linf", "alignment")
SUMMARY_KEYS = (
    "model",
    "spec",
    "attack",
    "norm",
    "status",
    "n_images",
    "n_attacked",
    "n_fooled",
    "accuracy",
    *MEASURES,
)
SUMMARY_COLUMNS = (
    "model",
    "attack",
    "norm",
    "status",
    "n_images",
    "n_attacked",
    "n_fooled",
    "accuracy",
    "num_classes",
    *(f"{m}_{s}" for m in MEASURES for s in ("mean", "sem")),
    *(f"{m}_{s}" for m in HUMAN_MEASURES for s in ("mean", "sem", "score")),
    "gaming",
    "spec",
    "error",
)
FAILED_KEYS = ("model", "attack", "error_type", "message")
PREVIEW_KEYS = ("images", "heatmaps", "labels", "ids")


def _cell(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "True" if value else "False"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return "" if value is None else str(value)


def csv_text(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A CSV document (``\\n`` line ends) of ``header`` and ``rows``, numbers written exactly."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([[_cell(v) for v in row] for row in rows])
    return buffer.getvalue()


def read_json(path: Path, required: Sequence[str] = ()) -> dict[str, Any]:
    """A JSON object from ``path`` holding ``required`` keys; a SweepError naming the file otherwise."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SweepError(f"{path}: not a readable JSON file ({' '.join(str(error).split())})") from None
    if not isinstance(data, dict):
        raise SweepError(f"{path}: expected a JSON object, found {type(data).__name__}")
    missing = [key for key in required if key not in data]
    if missing:
        raise SweepError(f"{path}: missing key(s) {', '.join(missing)}")
    return data


def read_table(path: Path, columns: Sequence[str]) -> list[dict[str, str]]:
    """The rows of a CSV with exactly ``columns``; a SweepError naming the file otherwise."""
    try:
        with open(path, newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise SweepError(f"{path}: not a readable CSV file ({error})") from None
    if header is None or tuple(header) != tuple(columns):
        raise SweepError(f"{path}: columns {','.join(header or ['(none)'])}, expected {','.join(columns)}")
    for number, row in enumerate(rows, start=2):
        if len(row) != len(columns):
            raise SweepError(f"{path}: line {number} has {len(row)} fields, expected {len(columns)}")
    return [dict(zip(columns, row)) for row in rows]


def summary_row(data: dict[str, Any]) -> list[Any]:
    """The summary.csv row (:data:`SUMMARY_COLUMNS`) of a model's summary.json or failed.json."""
    row = {key: data.get(key, "") for key in SUMMARY_COLUMNS}
    for measure in MEASURES:
        stats = data.get(measure, {})
        row[f"{measure}_mean"], row[f"{measure}_sem"] = stats.get("mean", ""), stats.get("sem", "")
    for measure in HUMAN_MEASURES:
        stats = data.get(measure) or {}
        for stat in ("mean", "sem", "score"):
            row[f"{measure}_{stat}"] = stats.get(stat, "")
    row["gaming"] = (data.get("human") or {}).get("gaming", "")
    row["status"] = data.get("status", "failed")
    row["error"] = f"{data['error_type']}: {data['message']}" if "error_type" in data else ""
    return [row[c] for c in SUMMARY_COLUMNS]
