"""The one error of bad sweep input, whose message names library arguments that a CLI can rename."""
from __future__ import annotations

from collections.abc import Mapping

_MARK = "\x1f"


def arg(name: str) -> str:
    """``name`` as an argument inside a :class:`SweepError` message (rendered as ``name`` or a CLI flag)."""
    return f"{_MARK}{name}{_MARK}"


class SweepError(ValueError):
    """Bad sweep input found before any work (a bad spec, settings that clash with the output folder,
    an unreadable result file). ``str()`` names library arguments (``batch_size``);
    :meth:`render` with a mapping names them as a CLI does (``--batch-size``)."""

    def __init__(self, message: str) -> None:
        self.raw = message
        super().__init__(self.render())

    def render(self, names: Mapping[str, str] | None = None) -> str:
        """The message with each argument replaced by ``names[argument]`` (default: itself)."""
        parts = self.raw.split(_MARK)
        return "".join((names or {}).get(part, part) if i % 2 else part for i, part in enumerate(parts))
