"""The one error type of bad ClickMe input, and the one-line wording of a bad record."""

from __future__ import annotations

import os


class ClickMeDataError(ValueError):
    """Bad input data: a one-line message naming the file (and record, where there is one)."""


RECORD_PREFIX = "bad {source} record: "
"""How a bad-record message starts; ``source`` is "ClickMe" or "ImageNet-style"."""


def bad_record(source: str, path: str | os.PathLike, index: int, problem: str) -> str:
    """The one-line message of record ``index`` of ``path`` with ``problem``: both readers use it."""
    return f"{RECORD_PREFIX.format(source=source)}{os.fspath(path)} record {index}: {problem}"
