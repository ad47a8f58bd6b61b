"""The models' ImageNet accuracy for the report: a CSV in the format of timm's published
``results-imagenet.csv`` (columns ``model`` and ``top1``, in percent)."""

from __future__ import annotations

import csv
import os


def read_accuracy_csv(path: str | os.PathLike) -> dict[str, float]:
    """{model: top-1 accuracy in percent} from a CSV with columns ``model`` and ``top1``.

    The format of timm's ``results-imagenet.csv``. Raises ValueError naming the file and row
    for a missing column or a value that is not a number in [0, 100].
    """
    path = os.fspath(path)
    try:
        return _read(path)
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{path}: not UTF-8 text (byte {error.object[error.start]:#04x} at offset {error.start}); save it as UTF-8"
        ) from None


def _read(path: str) -> dict[str, float]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = {"model", "top1"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))} (need model, top1)")
        table: dict[str, float] = {}
        for row_number, row in enumerate(reader, start=2):
            try:
                value = float(row["top1"])
            except (TypeError, ValueError):
                raise ValueError(f"{path}: line {row_number}: top1 {row['top1']!r} is not a number") from None
            if not 0 <= value <= 100:  # NaN fails too
                raise ValueError(f"{path}: line {row_number}: top1 {row['top1']!r} is not a percentage in [0, 100]")
            table.setdefault((row["model"] or "").strip(), value)
    return table


def lookup_accuracy(table: dict[str, float], model: str) -> float | None:
    """A model's accuracy from ``read_accuracy_csv``'s table: exact name, else the first row
    (in file order) of the same architecture when ``model`` has no pretrained tag."""
    if model in table:
        return table[model]
    if "." in model:
        return None
    for name, value in table.items():
        if name.split(".")[0] == model:
            return value
    return None
