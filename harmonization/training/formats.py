"""The format numbers of the files that training writes and reads back: a run's ``run.json``
(``RUN_FORMAT``) and a saved ``Harmonizer``'s config (``HARMONIZER_FORMAT``), each written as its
"format" field.

A file without the field was written by harmonization 0.1.0 or older. 0.1.0 wrote format 1
without the number, so such a file is read when it holds every field that format 1 has; an older
layout is refused in one line, never filled in with guessed defaults.
"""

from __future__ import annotations

from collections.abc import Iterable

RUN_FORMAT = 1
HARMONIZER_FORMAT = 1


def format_problem(written, current: int, missing: Iterable[str]) -> str | None:
    """Why a file of format ``written`` (None: no number) that lacks the fields ``missing``
    cannot be read by this version, which reads format ``current``; None when it can."""
    if written is not None and (isinstance(written, bool) or written != current):
        return (
            f"format {written!r}, but this version of harmonization reads format {current} (a newer version wrote it?)"
        )
    missing = sorted(missing)
    if not missing:
        return None
    if written is None:
        return f"no format number and no {', '.join(missing)}: written before harmonization 0.1.0"
    return f"format {current} but no {', '.join(missing)}"
