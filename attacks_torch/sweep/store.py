"""The sweep folder: the one place that knows its layout, writes its files and reads them back.

    OUT/<model slug>/<attack>/config.json          the fingerprint that fixes the rows (checked on resume)
    OUT/<model slug>/<attack>/model.json           the loaded model's number of classes and data config
    OUT/<model slug>/<attack>/batches/000000.csv   the rows of one committed batch (by first index)
    OUT/<model slug>/<attack>/maps/000000.npy      |mean over channels of delta| of a fooled image
    OUT/<model slug>/<attack>/results.csv          every row, in stimulus order, when complete
    OUT/<model slug>/<attack>/summary.json         counts, mean and standard error, accuracy, classes
    OUT/<model slug>/human/...                     its human alignment, of any attack (``human.py``)
    OUT/<model slug>/<attack>/failed.json          the error of a model that failed
    OUT/summary.csv  OUT/pairs.csv  OUT/preview.npz  shared: rebuilt or merged under a lock

Every file goes through :mod:`harmonization.files` (a temporary name, then a rename), so a reader
sees a whole file or none. A file that cannot be read as what it should be raises a
:class:`SweepError` naming it, except a batch file left empty or cut short, which counts as not
written (the runner computes it again). Each file's columns, and how a table is written and read:
``tables.py``.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from attacks_torch.sweep.errors import SweepError
from attacks_torch.sweep.tables import (
    BATCH_COLUMNS,
    FAILED_KEYS,
    MEASURES,
    PREVIEW_KEYS,
    RESULT_COLUMNS,
    SUMMARY_COLUMNS,
    SUMMARY_KEYS,
    csv_text,
    read_json,
    read_table,
    summary_row,
)
from harmonization.files import OutputError, atomic_write, write_json, write_npy, write_text

SHARED_FILES = ("summary.csv", "pairs.csv", "preview.npz", ".lock")
"""The files at the top of a sweep folder, beside the model folders."""
RESERVED_NAMES = frozenset(name.casefold() for name in SHARED_FILES)
"""Model folder names (slugs) that would take a shared file's place, in any letter case."""


def read_all_batches(folder: Any, label: str, ids: Sequence[str], batch_size: int) -> list[dict[str, str]]:
    """Every batch file of ``folder`` (a ``ModelFolder`` or the human-alignment folder) for the
    images ``ids``, in order; a ``SweepError`` naming the first one missing or cut short."""
    rows: list[dict[str, str]] = []
    for start in range(0, len(ids), batch_size):
        batch = folder.read_batch(start, label, ids[start : start + batch_size])
        if batch is None:
            raise SweepError(f"{folder.batch_path(start)}: missing or cut short after every rank finished")
        rows.extend(batch)
    return rows


class ModelFolder:
    """The files of one model under one attack: ``OUT/<slug>/<attack>/``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.config = path / "config.json"
        self.model_info = path / "model.json"
        self.results = path / "results.csv"
        self.summary = path / "summary.json"
        self.failed = path / "failed.json"

    def batch_path(self, start: int) -> Path:
        return self.path / "batches" / f"{start:06d}.csv"

    def map_path(self, index: int) -> Path:
        return self.path / "maps" / f"{index:06d}.npy"

    def has_results(self) -> bool:
        """Whether anything that holds rows is here (batches, results or a summary)."""
        return self.results.exists() or self.summary.exists() or any((self.path / "batches").glob("*.csv"))

    def remove(self) -> None:
        """Delete this model's results under this attack (nothing else in OUT)."""
        try:
            shutil.rmtree(self.path)
        except FileNotFoundError:
            pass
        except OSError as error:
            raise OutputError(error.errno, f"cannot remove {self.path}: {error.strerror}") from None

    def read_config(self) -> dict[str, Any] | None:
        return read_json(self.config) if self.config.exists() else None

    def write_config(self, fingerprint: dict[str, Any]) -> None:
        write_json(self.config, fingerprint)

    def read_model_info(self) -> dict[str, Any]:
        return read_json(self.model_info, ("num_classes",)) if self.model_info.exists() else {"num_classes": None}

    def write_model_info(self, info: dict[str, Any]) -> None:
        write_json(self.model_info, info)

    def read_batch(self, start: int, label: str, ids: Sequence[str]) -> list[dict[str, str]] | None:
        """The rows of the batch at ``start`` (stimuli ``ids``, model ``label``), or None when it was not
        written or was left empty or cut short. A file with other columns or rows is a SweepError."""
        path = self.batch_path(start)
        if not path.exists():
            return None
        text, header = path.read_text(errors="replace"), ",".join(BATCH_COLUMNS)
        first_line, newline, _ = text.partition("\n")
        if not newline and header.startswith(text):
            return None  # empty, or cut short inside the header: a sweep's own half-written file, computed again
        if first_line == header and (not text.endswith("\n") or text.count("\n") < 1 + len(ids)):
            return None  # cut short after the header: computed again
        rows = read_table(path, BATCH_COLUMNS)
        if [r["image_id"] for r in rows] != list(ids) or any(r["model"] != label for r in rows):
            raise SweepError(
                lambda name: (
                    f"{path}: holds {len(rows)} rows that are not model "
                    f"{label!r} on stimuli {ids[0]} .. {ids[-1]}; remove it, "
                    f"or start the model over ({name('fresh')})"
                )
            )
        return rows

    def write_batch(self, start: int, rows: Sequence[Sequence[Any]]) -> None:
        write_text(self.batch_path(start), csv_text(BATCH_COLUMNS, rows))

    def write_map(self, index: int, array: np.ndarray) -> None:
        write_npy(self.map_path(index), np.asarray(array, dtype=np.float32))

    def read_map(self, index: int) -> np.ndarray | None:
        """The perturbation map of stimulus ``index`` (2-D), or None when none was kept."""
        path = self.map_path(index)
        if not path.exists():
            return None
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise SweepError(f"{path}: not a readable .npy map ({error})") from None
        if not isinstance(array, np.ndarray) or array.ndim != 2 or not np.issubdtype(array.dtype, np.floating):
            raise SweepError(f"{path}: expected a 2-D float map, found {getattr(array, 'shape', '?')}")
        return array

    def write_results(self, rows: Sequence[dict[str, str]]) -> None:
        write_text(self.results, csv_text(RESULT_COLUMNS, [[r.get(c, "") for c in RESULT_COLUMNS] for r in rows]))

    def read_results(self) -> list[dict[str, str]]:
        """Every row, with RESULT_COLUMNS (the human cells empty in a file written before them)."""
        try:
            return read_table(self.results, RESULT_COLUMNS)
        except SweepError:
            rows = read_table(self.results, BATCH_COLUMNS)
        return [{c: r.get(c, "") for c in RESULT_COLUMNS} for r in rows]

    def read_summary(self) -> dict[str, Any] | None:
        """The summary of a finished model (checked: every key, each measure's mean and sem), or None."""
        if not self.summary.exists():
            return None
        data = read_json(self.summary, SUMMARY_KEYS)
        for measure in MEASURES:
            if not isinstance(data[measure], dict) or not {"mean", "sem"} <= set(data[measure]):
                raise SweepError(f"{self.summary}: {measure} needs a mean and a sem")
        return data

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json(self.summary, summary)
        with contextlib.suppress(FileNotFoundError):
            self.failed.unlink()

    def read_failed(self) -> dict[str, Any] | None:
        return read_json(self.failed, FAILED_KEYS) if self.failed.exists() else None

    def write_failed(self, record: dict[str, Any]) -> None:
        write_json(self.failed, record)


class SweepFolder:
    """A sweep's output folder ``root``: per-model folders and the shared files (see the module doc)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.summary_csv, self.pairs_csv, self.preview, self.lock_file = (self.root / name for name in SHARED_FILES)

    def model(self, slug: str, attack: str) -> ModelFolder:
        return ModelFolder(self.root / slug / attack)

    def prepare(self) -> None:
        """Create the folder; a SweepError (``out_dir``) when it is a file, an OutputError when it cannot be made."""
        if self.root.exists() and not self.root.is_dir():
            raise SweepError.about("out_dir", f" {self.root}: is a file, not a folder")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OutputError(error.errno, f"cannot write {self.root}: {error.strerror}") from None

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """An exclusive lock on the shared files, held across processes (fcntl)."""
        self.prepare()
        try:
            handle = open(self.lock_file, "a")
        except OSError as error:
            raise OutputError(error.errno, f"cannot write {self.lock_file}: {error.strerror}") from None
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def model_folders(self) -> list[ModelFolder]:
        """Every model folder holding a summary or a failure record, sorted by slug and attack."""
        if not self.root.is_dir():
            raise FileNotFoundError(f"sweep folder {str(self.root)!r} does not exist")
        folders = (ModelFolder(p) for p in sorted(self.root.glob("*/*")) if p.is_dir())
        return [f for f in folders if f.summary.exists() or f.failed.exists()]

    def finished(self) -> list[tuple[ModelFolder, dict[str, Any]]]:
        """(folder, summary) of every finished model."""
        return [(f, s) for f in self.model_folders() if (s := f.read_summary()) is not None]

    def failures(self) -> list[dict[str, Any]]:
        """The failure records of models that have not finished since."""
        return [r for f in self.model_folders() if not f.summary.exists() and (r := f.read_failed()) is not None]

    def write_preview(
        self, images: np.ndarray, heatmaps: np.ndarray, labels: np.ndarray, ids: list[str], stimuli_sha256: str
    ) -> None:
        """The first stimuli, for the report's panels: written when missing or of other stimuli."""
        if self.preview.exists() and (self.read_preview() or {}).get("stimuli_sha256") == stimuli_sha256:
            return
        with atomic_write(self.preview, "wb") as handle:
            np.savez(
                handle,
                images=images,
                heatmaps=heatmaps,
                labels=labels,
                ids=np.array(ids),
                stimuli_sha256=np.array(stimuli_sha256),
            )

    def read_preview(self) -> dict[str, Any] | None:
        """images, heatmaps, labels, ids of the first stimuli and their set's ``stimuli_sha256``, or None."""
        if not self.preview.exists():
            return None
        try:
            with np.load(self.preview, allow_pickle=False) as data:
                missing = [k for k in PREVIEW_KEYS if k not in data.files]
                if missing:
                    raise SweepError(f"{self.preview}: missing array(s) {', '.join(missing)}")
                preview: dict[str, Any] = {key: data[key] for key in PREVIEW_KEYS}
                preview["stimuli_sha256"] = str(data["stimuli_sha256"]) if "stimuli_sha256" in data.files else None
                return preview
        except (OSError, ValueError) as error:
            if isinstance(error, SweepError):
                raise
            raise SweepError(f"{self.preview}: not a readable .npz file ({error})") from None

    def read_pairs(self) -> list[tuple[str, str]]:
        if not self.pairs_csv.exists():
            return []
        return [(r["control"], r["harmonized"]) for r in read_table(self.pairs_csv, ("control", "harmonized"))]

    def record_pairs(self, pairs: Sequence[tuple[str, str]]) -> None:
        """Add control -> harmonized pairs to pairs.csv (kept unique, under the lock)."""
        if not pairs:
            return
        with self.lock():
            merged = list(dict.fromkeys([*self.read_pairs(), *pairs]))
            write_text(self.pairs_csv, csv_text(("control", "harmonized"), merged))

    def rebuild_summary(self) -> Path:
        """Rebuild summary.csv from every model's summary.json and failed.json (under the lock)."""
        with self.lock():
            rows = [summary_row(f.read_summary() or f.read_failed()) for f in self.model_folders()]
            rows.sort(key=lambda r: (str(r[0]), str(r[1])))
            write_text(self.summary_csv, csv_text(SUMMARY_COLUMNS, rows))
        return self.summary_csv
