"""Atomic file writes for everything both packages write (standard library and numpy only).

A file is written to a temporary name beside its target and renamed over it, so a reader (or a run
started again after a kill or a full disk) sees either the old file or the whole new one, never a
truncated one. Final files get the permissions the user's umask gives a new file (``mkstemp``'s
owner-only mode is not left behind).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


class OutputError(OSError):
    """A result could not be written: the message names the file and the reason, in one line."""

    def __str__(self) -> str:
        return str(self.strerror)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def describe_os_error(error: OSError) -> str:
    """The short reason of an OS error ("No space left on device", "Permission denied")."""
    return error.strerror or type(error).__name__


@contextlib.contextmanager
def output_errors(path: str | os.PathLike) -> Iterator[None]:
    """Turn an ``OSError`` raised inside the block (a full disk, a read-only folder) into an
    ``OutputError`` naming ``path``; for writers that manage their own files (Keras, shard sets)."""
    try:
        yield
    except OutputError:
        raise
    except OSError as error:
        raise OutputError(error.errno, f"cannot write {path}: {describe_os_error(error)}") from error


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; rename it to ``path`` on success.

    On any error the temporary file is removed and ``path`` is left as it was; an ``OSError``
    (a full disk, a read-only folder, a path that is a folder) becomes an ``OutputError`` naming
    ``path``.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            raise IsADirectoryError(21, "Is a directory")
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".tmp-{path.name}-")
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode, **({"newline": ""} if "b" not in mode else {})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as error:
        if isinstance(error, OutputError):
            raise
        raise OutputError(error.errno, f"cannot write {path}: {describe_os_error(error)}") from error
    finally:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_write(path) as handle:
        handle.write(text)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_write(path, "wb") as handle:
        handle.write(data)


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented, key-sorted JSON (NaN allowed) to ``path`` atomically."""
    write_text(path, json.dumps(data, indent=1, sort_keys=True, allow_nan=True) + "\n")


def write_npy(path: str | os.PathLike, array: Any) -> None:
    """Save a numpy array to ``path`` (``.npy``) atomically."""
    import numpy as np

    with atomic_write(path, "wb") as handle:
        np.save(handle, np.asarray(array))


def replace_from(tmp_path: str | os.PathLike, path: str | os.PathLike) -> None:
    """Rename a finished temporary file (written by a library that needs a file name, such as
    Keras's saving) over ``path``, with umask permissions; an ``OSError`` becomes an ``OutputError``."""
    try:
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            os.unlink(tmp_path)
        raise OutputError(error.errno, f"cannot write {path}: {describe_os_error(error)}") from error


@contextlib.contextmanager
def temporary_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """A fresh temporary file name beside ``path`` (with ``suffix``, which some writers need); on
    success of the block it is renamed over ``path`` by ``replace_from``, on failure removed. An
    ``OSError`` inside the block becomes an ``OutputError`` naming ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".tmp-{path.name}-", suffix=suffix)
        os.close(fd)
    except OSError as error:
        raise OutputError(error.errno, f"cannot write {path}: {describe_os_error(error)}") from error
    try:
        with output_errors(path):
            yield Path(tmp)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    else:
        replace_from(tmp, path)
