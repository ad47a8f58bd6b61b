"""The one error of bad sweep input, whose message names library arguments that a CLI can rename."""

from __future__ import annotations

from harmonization.errors import ArgumentError


class SweepError(ArgumentError, ValueError):
    """Bad sweep input found before any work (a bad spec, settings that clash with the output folder,
    an unreadable result file). ``str()`` names library arguments (``batch_size``);
    :meth:`render` with a mapping names them as a CLI does (``--batch-size``)."""
