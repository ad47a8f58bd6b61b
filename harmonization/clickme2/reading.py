"""Read the lab's raw click files: CSV (``image_path``, ``clicks``, ``user_id``) and NPZ
(``file_pointer``, ``clickmap_x``, ``clickmap_y``, ``user_id``, ``user_catch_trial``,
``is_mobile``), one row per participant and image.

A bad row raises ClickFileError naming the file and the line (CSV) or key and row (NPZ). NPZ rows
of participants below the catch-trial threshold (and, by default, on a mobile device) are dropped
here, as the lab drops them when it loads the file; CSV files carry no such columns.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass

import numpy as np

from harmonization.clickme2.errors import bad_click_file
from harmonization.clickme2.npz import load_npz

CSV_COLUMNS = ("image_path", "clicks", "user_id")
NPZ_KEYS = ("file_pointer", "clickmap_x", "clickmap_y", "user_id", "user_catch_trial", "is_mobile")
CATCH_THRESHOLD = 0.95
"""Lowest catch-trial accuracy of a participant whose NPZ rows are kept."""

_PAIR = r"\(\s*(-?\d+)\s*,\s*(-?\d+)\s*\)"
_CLICKS = re.compile(rf"\s*\[?\s*(?:{_PAIR}(?:\s*,\s*{_PAIR})*)?\s*\]?\s*")


@dataclass(frozen=True)
class Trial:
    """One participant's clicks on one image: ``where`` names its line or row in the file."""

    image_path: str
    user_id: int
    clicks: tuple[tuple[int, int], ...]
    where: str


@dataclass(frozen=True)
class ClickTable:
    """The trials of one file in file order, and how many rows the catch/mobile filter dropped."""

    path: str
    trials: list[Trial]
    dropped_by_catch: int = 0


def parse_clicks(text: str, path: str, where: str) -> tuple[tuple[int, int], ...]:
    """``"[(x, y), (x, y), ...]"`` -> ((x, y), ...) in click order; anything else is an error."""
    text = re.sub(r'[{}"]', "", text)
    if not _CLICKS.fullmatch(text):
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise bad_click_file(
            path, where, f"malformed clicks {shown!r} (expected '[(x, y), ...]' with integer pixel coordinates)"
        )
    return tuple((int(x), int(y)) for x, y in re.findall(_PAIR, text))


def _user_id(value, path: str, where: str) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not np.isfinite(number) or number != int(number):
        raise bad_click_file(path, where, f"user_id {value!r} is not a whole number")
    return int(number)


def read_csv(path: str | os.PathLike) -> ClickTable:
    """The trials of a click CSV (rows sorted by ``timestamp`` first where that column exists)."""
    path = os.fspath(path)
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        missing = [name for name in CSV_COLUMNS if name not in columns]
        if missing:
            raise bad_click_file(
                path, "line 1", f"missing column(s) {', '.join(missing)} (found: {', '.join(columns) or 'none'})"
            )
        rows = []
        for row in reader:
            where = f"line {reader.line_num}"
            if None in row.values():
                raise bad_click_file(path, where, f"{len(columns)} columns expected")
            rows.append((row.get("timestamp", ""), where, row))
    if "timestamp" in columns:
        rows.sort(key=lambda item: item[0])
    trials = [
        Trial(row["image_path"], _user_id(row["user_id"], path, where), parse_clicks(row["clicks"], path, where), where)
        for _, where, row in rows
    ]
    return ClickTable(path, trials)


def _first_flag(value) -> bool:
    """The lab's reading of one ``is_mobile`` entry: a scalar, or the first of a list (empty: False)."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return bool(np.asarray(value).ravel()[0]) if np.asarray(value).size else False
    return bool(value)


def _coordinates(value, path: str, key: str, row: int) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise bad_click_file(path, f"key {key!r} row {row}", "click coordinates are not numbers") from None
    if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
        raise bad_click_file(path, f"key {key!r} row {row}", "click coordinates must be whole pixels")
    return array.astype(np.int64)


def read_npz(
    path: str | os.PathLike, catch_threshold: float = CATCH_THRESHOLD, filter_mobile: bool = True
) -> ClickTable:
    """The trials of a click NPZ whose participant passed the catch trials (and is not mobile)."""
    path = os.fspath(path)
    data = load_npz(path, NPZ_KEYS)
    sizes = {key: len(np.atleast_1d(data[key])) for key in NPZ_KEYS}
    if len(set(sizes.values())) != 1:
        raise bad_click_file(
            path,
            "",
            "keys hold different numbers of rows: " + ", ".join(f"{key} {size}" for key, size in sizes.items()),
        )
    try:
        catch = np.asarray(data["user_catch_trial"], dtype=np.float64)
    except (TypeError, ValueError):
        raise bad_click_file(path, "key 'user_catch_trial'", "values are not numbers") from None
    keep = catch >= catch_threshold
    if filter_mobile:
        keep &= ~np.array([_first_flag(v) for v in data["is_mobile"]], dtype=bool)
    trials = []
    for row in np.flatnonzero(keep):
        xs = _coordinates(data["clickmap_x"][row], path, "clickmap_x", row)
        ys = _coordinates(data["clickmap_y"][row], path, "clickmap_y", row)
        if xs.size != ys.size:
            raise bad_click_file(path, f"row {row}", f"clickmap_x has {xs.size} clicks, clickmap_y {ys.size}")
        where = f"row {row}"
        user = _user_id(data["user_id"][row], path, f"key 'user_id' {where}")
        trials.append(Trial(str(data["file_pointer"][row]), user, tuple(zip(xs.tolist(), ys.tolist())), where))
    return ClickTable(path, trials, dropped_by_catch=int((~keep).sum()))


def read_clicks(
    path: str | os.PathLike, catch_threshold: float = CATCH_THRESHOLD, filter_mobile: bool = True
) -> ClickTable:
    """A click file by its extension: ``.csv`` or ``.npz``."""
    path = os.fspath(path)
    if path.lower().endswith(".csv"):
        return read_csv(path)
    if path.lower().endswith(".npz"):
        return read_npz(path, catch_threshold, filter_mobile)
    raise bad_click_file(path, "", "a click file must be .csv or .npz")
