"""Checks of ``adv-align``'s arguments: bounded numbers, and outputs that are neither empty, too
long for the file system, nor one of the command's own inputs. Each failure is one line."""
from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable, Iterable

NAME_MAX = 255
"""The longest file name (one path component, in bytes) that the usual file systems accept."""


class ArgumentError(ValueError):
    """A bad argument, found after parsing; the message names the flag."""


def integer(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high]."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected an integer from {low} to {high}, got {text}")
        return value
    return parse


def number(low: float, high: float, *, include_low: bool = False, include_high: bool = True,
           ) -> Callable[[str], float]:
    """An argparse type: a finite number between low and high (ends included as said)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        above = value >= low if include_low else value > low
        below = value <= high if include_high else value < high
        if not (math.isfinite(value) and above and below):
            span = f"{'[' if include_low else '('}{low:g}, {high:g}{']' if include_high else ')'}"
            raise argparse.ArgumentTypeError(f"expected a finite number in {span}, got {text}")
        return value
    return parse


def check_output(flag: str, path: str) -> None:
    """Refuse an empty output path, or one with a file name the file system cannot hold."""
    if not path.strip():
        raise ArgumentError(f"{flag}: an empty path (give a folder to write into)")
    for part in path.split(os.sep):
        if len(os.fsencode(part)) > NAME_MAX:
            raise ArgumentError(f"{flag}: the name {part[:40]!r}... is {len(os.fsencode(part))} bytes long, "
                                f"more than the {NAME_MAX} a file name may have")


def _same(a: str, b: str) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def check_not_input(flag: str, out: str, inputs: Iterable[tuple[str, str]]) -> None:
    """Refuse an output that is one of the inputs ((what, path) pairs), so that nothing read is written over."""
    for what, path in inputs:
        if path and os.path.exists(path) and _same(out, path):
            raise ArgumentError(f"{flag} {out}: is the {what} {path} that this command reads; "
                                "choose another output")


def inside(path: str, folder: str) -> bool:
    """Whether ``path`` is ``folder`` or lies within it (after resolving links)."""
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)
