"""A training run's folder: its recorded settings and state, atomic backups, and ``history.csv``.

Layout of ``OUT``: ``run.json`` (its format, ``formats.RUN_FORMAT``; the settings the run was
started with, its status, the fingerprint of its data and, once complete, the sha256 of its
model file),
``history.csv`` (one header, one row per finished epoch), ``backup/epoch-NNNN.weights.h5`` (the
model and optimizer after NNNN epochs; the newest two are kept), and, once the run is complete,
``model.keras`` (``model.safetensors`` for a timm model: its state dict) and ``summary.json``.
Every file is written to a temporary name and renamed
(``harmonization.files``), so a kill or a full disk never leaves a truncated file behind.
"""

from __future__ import annotations

import csv
import errno
import json
import logging
import math
import os
import re
import shutil
from collections.abc import Collection
from pathlib import Path

import keras

from harmonization.files import atomic_write, output_errors, temporary_path, write_json
from harmonization.training.errors import ConfigError
from harmonization.training.fingerprint import file_sha256
from harmonization.training.formats import RUN_FORMAT, format_problem

log = logging.getLogger(__name__)

RUN_RECORD = "run.json"
HISTORY = "history.csv"
SUMMARY = "summary.json"
MODEL = "model.keras"
TIMM_MODEL = "model.safetensors"
BACKUP = "backup"
RUN_FILES = (RUN_RECORD, HISTORY, SUMMARY, MODEL, TIMM_MODEL, BACKUP)
"""What a run writes in its folder."""
STATUSES = ("running", "collapsed", "complete")
_REQUIRED = {"running": ("data",), "collapsed": ("data",), "complete": ("data", "model_sha256")}
"""What a run record of each status holds besides its settings."""
_CHECKPOINT = re.compile(r"epoch-(\d{4,})\.weights\.h5")


class RunFolder:
    """The files of one training run under ``out``; ``model``: the trained model's file name."""

    def __init__(self, out: str | os.PathLike, model: str = MODEL):
        self.out = Path(out)
        self.record_path = self.out / RUN_RECORD
        self.history_path = self.out / HISTORY
        self.summary_path = self.out / SUMMARY
        self.model_path = self.out / model
        self.backup_dir = self.out / BACKUP

    def prepare(self) -> None:
        """Create the folder; an ``OutputError`` naming it when it is a file or cannot be made."""
        with output_errors(self.out):
            if self.out.exists() and not self.out.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, "Not a directory")
            self.out.mkdir(parents=True, exist_ok=True)

    def clear(self) -> None:
        """Remove this run's files (and nothing else in the folder): a fresh start."""
        with output_errors(self.out):
            for path in (self.record_path, self.history_path, self.summary_path, self.model_path):
                path.unlink(missing_ok=True)
            if self.backup_dir.exists():
                shutil.rmtree(self.backup_dir)

    def read_record(self, settings: Collection[str] = ()) -> dict | None:
        """The recorded ``{"format", "settings", "status", "data", ...}``, or None for a folder
        without a run; refused when its format is not ``RUN_FORMAT`` or it lacks one of the
        ``settings`` (the fields a run records) or what its status needs."""
        if not self.record_path.exists():
            leftovers = [p.name for p in (self.history_path, self.backup_dir, self.model_path) if p.exists()]
            if leftovers:
                raise ConfigError(
                    lambda name: (
                        f"{self.out} holds {', '.join(leftovers)} of a run without its settings "
                        f"({RUN_RECORD}); {name('fresh')} starts over"
                    )
                )
            return None
        try:
            record = json.loads(self.record_path.read_text())
            if not isinstance(record, dict) or not isinstance(record.get("settings"), dict):
                raise ValueError("no settings")
            if record.get("status") not in STATUSES:
                raise ValueError(f"status {record.get('status')!r}")
            if not isinstance(record.get("data", {}), dict):
                raise ValueError("data is not a mapping")
        except (OSError, ValueError) as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise ConfigError(
                lambda name: f"{self.record_path}: not a readable run record ({reason}); {name('fresh')} starts over"
            ) from None
        missing = {f"settings.{key}" for key in settings if key not in record["settings"]}
        missing |= {key for key in _REQUIRED[record["status"]] if key not in record}
        problem = format_problem(record.get("format"), RUN_FORMAT, missing)
        if problem is not None:
            raise ConfigError(lambda name: f"{self.record_path}: {problem}; {name('fresh')} starts over")
        return record

    def check_complete(self, model_sha256: str) -> None:
        """Refuse to call the run complete when its model file is missing or is not the one it
        wrote (``model_sha256``, recorded at completion)."""
        if not self.model_path.is_file():
            problem = "is missing"
        elif model_sha256 != file_sha256(self.model_path):
            problem = "is not the file the run wrote (its content changed)"
        else:
            return
        raise ConfigError(
            lambda name: (
                f"{self.out}: the run is recorded complete but "
                f"{self.model_path} {problem}; {name('fresh')} trains it again"
            )
        )

    def write_record(self, settings: dict, status: str, **details) -> None:
        """Record the run's settings and its status (one of ``STATUSES``)."""
        write_json(self.record_path, {"format": RUN_FORMAT, "settings": settings, "status": status, **details})

    def read_history(self) -> list[dict]:
        """The rows of ``history.csv`` (numbers as floats, ``epoch`` as int); [] without one."""
        if not self.history_path.exists():
            return []
        try:
            with open(self.history_path, newline="") as handle:
                rows = list(csv.DictReader(handle))
            return [
                {key: int(value) if key == "epoch" else _number(value) for key, value in row.items()} for row in rows
            ]
        except (OSError, ValueError, TypeError, csv.Error) as error:
            detail = str(error)  # bound now: the message is built after the except block ends
            raise ConfigError(
                lambda name: f"{self.history_path}: not a readable history ({detail}); {name('fresh')} starts over"
            ) from None


def _number(text: str | None) -> float:
    return math.nan if text in (None, "") else float(text)


def batch_stream(train, steps: int, done: int, repeated: bool):
    """The training batches as one stream of ``steps`` batches per epoch, from epoch ``done`` on
    (``repeated``: ``train`` already repeats).

    One iterator serves the whole run (``fit`` keeps it when given ``steps_per_epoch``), so the
    batches of epoch e are those the run's seed puts at e x steps: a run resumed after ``done``
    epochs skips those (reading them, without training) and then sees what the uninterrupted run
    sees. A new iterator of the dataset would reshuffle, so restarting iteration would not.
    """
    if not repeated:  # a finite epoch of whole batches (training drops the remainder)
        train = train.repeat()
    return train.skip(done * steps) if done else train


def changed_settings(recorded: dict, requested: dict) -> dict[str, tuple]:
    """{field: (recorded, requested)} for every setting that differs."""
    return {
        key: (recorded.get(key), requested.get(key))
        for key in sorted(set(recorded) | set(requested))
        if recorded.get(key) != requested.get(key)
    }


class HistoryWriter(keras.callbacks.Callback):
    """Writes ``history.csv`` after every epoch: one header, one row per epoch, atomically.

    The columns are ``epoch`` and the sorted log names of the first row (``rows``: the rows of
    earlier epochs of a resumed run), fixed for the run; a rerun epoch replaces its row.
    """

    def __init__(self, path: str | os.PathLike, rows: list[dict] = ()):
        super().__init__()
        self.path = Path(path)
        self.rows = list(rows)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        row = {"epoch": int(epoch), **{key: float(value) for key, value in (logs or {}).items()}}
        self.rows = [r for r in self.rows if r["epoch"] < epoch] + [row]
        columns = ["epoch", *sorted(key for key in self.rows[0] if key != "epoch")]
        with atomic_write(self.path) as handle:
            writer = csv.DictWriter(handle, columns, restval="", extrasaction="ignore")
            writer.writeheader()
            writer.writerows(self.rows)


class Backup(keras.callbacks.Callback):
    """Saves the model and its optimizer to ``folder/epoch-NNNN.weights.h5`` after every epoch,
    atomically, keeping the newest ``keep``; ``restore`` loads the newest readable one."""

    def __init__(self, folder: str | os.PathLike, keep: int = 2):
        super().__init__()
        self.folder = Path(folder)
        self.keep = max(int(keep), 1)

    def checkpoints(self) -> list[tuple[int, Path]]:
        """(epochs done, path) of each backup, oldest first."""
        if not self.folder.is_dir():
            return []
        found = [
            (int(match.group(1)), self.folder / name)
            for name in os.listdir(self.folder)
            if (match := _CHECKPOINT.fullmatch(name))
        ]
        return sorted(found)

    def restore(self, model: keras.Model) -> int:
        """Load the newest readable backup into ``model`` (its optimizer built); returns the
        number of epochs it holds (0 without a backup). An unreadable backup is reported in one
        log line and the previous one is tried."""
        found = self.checkpoints()
        for epochs, path in reversed(found):
            try:
                model.load_weights(path)
                return epochs
            except Exception as error:  # h5py and Keras raise OSError, ValueError, KeyError, ...
                reason = str(error).splitlines()[0] if str(error) else type(error).__name__
                log.warning("%s: unreadable backup (%s); trying the one before", path, reason)
        if found:
            raise ConfigError(lambda name: f"{self.folder}: no readable backup; {name('fresh')} starts over")
        return 0

    def remove(self) -> None:
        """Delete the backups (the run is complete)."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        target = self.folder / f"epoch-{epoch + 1:04d}.weights.h5"
        with output_errors(target):
            with temporary_path(target, suffix=".weights.h5") as tmp:
                self.model.save_weights(tmp)
            for _, old in self.checkpoints()[: -self.keep]:
                old.unlink(missing_ok=True)
