"""The one error type of the library whose one-line message names the arguments it concerns.

The library raises it with a message built by a function of ``name`` (``name("batch_size")``), so
that each front end renders the same message with its own names for those arguments: the library
its parameter names, a command line its flags (``--batch-size``). The training, sweep and model
errors subclass it; :mod:`harmonization.cli.toolkit` renders it for ``harmonize`` and ``adv-align``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import ClassVar, Self

Namer = Callable[[str], str]
"""Maps a library argument (``batch_size``) to how a message names it (``--batch-size``)."""


class ArgumentError(Exception):
    """An error whose message is ``build(name)``, ``name`` naming each library argument it mentions.

    ``build`` may also be a plain string, for a message that names no argument. ``str()`` names
    the arguments as the library does (``SWITCHES`` of the class, else the argument itself);
    :meth:`render` names them as a front end does.
    """

    SWITCHES: ClassVar[Mapping[str, str]] = {}
    """Arguments that the library names by the setting that flips them (``fresh=True``)."""

    def __init__(self, build: Callable[[Namer], str] | str) -> None:
        self.build: Callable[[Namer], str] = build if callable(build) else (lambda name: build)
        super().__init__(self.render())

    @classmethod
    def about(cls, argument: str, text: str) -> Self:
        """The error whose message is ``argument``'s name followed by ``text`` (its own separator
        first, as in ``": not a folder"``)."""
        return cls(lambda name: f"{name(argument)}{text}")

    def render(self, names: Mapping[str, str] | None = None) -> str:
        """The message with each argument named by ``names`` (e.g. a CLI's flags); arguments it
        does not name keep the library's names."""
        names = names or {}

        def name(argument: str) -> str:
            return names.get(argument) or self.SWITCHES.get(argument, argument)

        return self.build(name)

    def message(self) -> str:
        """The message as the library words it (``str()`` of the error)."""
        return self.render()
