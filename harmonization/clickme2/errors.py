"""The one error of a bad ClickMe 2 input file: one line naming the file and the row or key."""

from __future__ import annotations

import os

from harmonization.clickme.errors import ClickMeDataError


class ClickFileError(ClickMeDataError):
    """A click or clickmap file that cannot be used; the message names the file and row or key."""


def bad_click_file(path: str | os.PathLike, where: str, problem: str) -> ClickFileError:
    """``path where: problem`` as a one-line error (``where`` is e.g. "row 12" or "key 'clicks'")."""
    location = f"{os.fspath(path)} {where}" if where else os.fspath(path)
    return ClickFileError(f"{location}: {problem}".replace("\n", " "))
