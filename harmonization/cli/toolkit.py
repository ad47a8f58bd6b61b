"""What the ``harmonize`` and ``adv-align`` command lines share: the parser whose errors are one
line with exit code 2, bounded number types, the names of a parser's flags, and the one-line
message of an error a command reports (a library error rendered with the command's flag names)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Mapping

from harmonization.errors import ArgumentError

USAGE = 2
"""Exit code of a bad argument, input or output."""


class UsageError(ValueError):
    """A bad argument found after parsing; the message names the flag (one line, exit code 2)."""


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr (exit code 2)."""

    def error(self, message: str):
        self.exit(USAGE, f"{self.prog.split()[0]}: error: {message} (see {self.prog} --help)\n")


def _parse(kind: Callable[[str], float], text: str) -> float | None:
    """``text`` as a ``kind`` number (maybe not finite), or None when it is none."""
    try:
        return kind(text)
    except (ValueError, OverflowError):
        return None


def number(
    kind: Callable[[str], float], low: float, inclusive: bool = True, high: float | None = None
) -> Callable[[str], float]:
    """An argument type: a finite ``kind`` number >= ``low`` (> ``low`` unless ``inclusive``) and,
    with ``high``, <= ``high``; a refusal names the bound crossed ("0 must be >= 1")."""

    def parse(text: str) -> float:
        value = _parse(kind, text)
        if value is None:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}")
        if not math.isfinite(value) or value < low or (value == low and not inclusive):
            raise argparse.ArgumentTypeError(f"{text} must be {'>=' if inclusive else '>'} {low}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"{text} must be <= {high}")
        return value

    return parse


def within(
    kind: Callable[[str], float], low: float, high: float, *, include_low: bool = True, include_high: bool = True
) -> Callable[[str], float]:
    """An argument type: a finite ``kind`` number between ``low`` and ``high`` (ends included as
    said); a refusal states the whole range ("expected an integer from 1 to 1024, got 0")."""
    if kind is int:
        noun, expected = "an integer", f"an integer from {low} to {high}"
    else:
        ends = f"{'[' if include_low else '('}{low:g}, {high:g}{']' if include_high else ')'}"
        noun, expected = "a number", f"a finite number in {ends}"

    def parse(text: str) -> float:
        value = _parse(kind, text)
        if value is None:
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}")
        above = value >= low if include_low else value > low
        below = value <= high if include_high else value < high
        if not (math.isfinite(value) and above and below):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
        return value

    return parse


def flag_names(parser: argparse.ArgumentParser) -> dict[str, str]:
    """{destination: the flag that sets it} for the options of ``parser``."""
    return {action.dest: max(action.option_strings, key=len) for action in parser._actions if action.option_strings}


def one_line(error: BaseException, flags: Mapping[str, str]) -> str | None:
    """The one-line message of an error caused by the arguments, inputs or outputs, a library
    error naming its arguments by ``flags`` ({library name: flag}); None for any other error
    (a bug, which keeps its traceback)."""
    if isinstance(error, ArgumentError):
        text = error.render(flags)
    elif isinstance(error, OSError) and error.filename is not None:  # an input that cannot be read
        text = f"{error.filename}: {error.strerror or type(error).__name__}"
    elif isinstance(error, OSError) and error.strerror:  # an OutputError, a full disk, ...
        text = error.strerror
    elif isinstance(error, (ValueError, OSError)):
        text = str(error).strip() or type(error).__name__
    else:
        return None
    return " ".join(text.split())
