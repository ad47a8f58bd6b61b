"""Checks of ``adv-align``'s outputs: neither empty, too long for the file system, nor one of the
command's own inputs. Each failure is a one-line ``UsageError`` naming the flag."""

from __future__ import annotations

import os
from collections.abc import Iterable

from harmonization.cli.toolkit import UsageError

NAME_MAX = 255
"""The longest file name (one path component, in bytes) that the usual file systems accept."""


def check_output(flag: str, path: str) -> None:
    """Refuse an empty output path, or one with a file name the file system cannot hold."""
    if not path.strip():
        raise UsageError(f"{flag}: an empty path (give a folder to write into)")
    for part in path.split(os.sep):
        if len(os.fsencode(part)) > NAME_MAX:
            raise UsageError(
                f"{flag}: the name {part[:40]!r}... is {len(os.fsencode(part))} bytes "
                f"long, more than the {NAME_MAX} a file name may have"
            )


def _same(a: str, b: str) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def check_not_input(flag: str, out: str, inputs: Iterable[tuple[str, str]]) -> None:
    """Refuse an output that is one of the inputs ((what, path) pairs), so that nothing read is written over."""
    for what, path in inputs:
        if path and os.path.exists(path) and _same(out, path):
            raise UsageError(f"{flag} {out}: is the {what} {path} that this command reads; choose another output")


def inside(path: str, folder: str) -> bool:
    """Whether ``path`` is ``folder`` or lies within it (after resolving links)."""
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)
