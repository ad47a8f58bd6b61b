"""Errors of a training run whose one-line messages name ``TrainConfig`` fields.

A front end renders the same message with its own names for the fields (the ``harmonize`` CLI:
its flags), so the library never needs to know them (see :mod:`harmonization.errors`).
"""

from __future__ import annotations

from collections.abc import Callable

from harmonization.errors import ArgumentError, Namer

SWITCHES = {"fresh": "fresh=True", "collapse_guard": "collapse_guard=False"}
"""Fields that messages name by the setting that flips them."""


def field_name(field: str) -> str:
    """How the library itself names a ``TrainConfig`` field in a message."""
    return SWITCHES.get(field, field)


class RunError(ArgumentError):
    """An error of a training run; its message names the switches as in ``SWITCHES``."""

    SWITCHES = SWITCHES


class ConfigError(RunError, ValueError):
    """Settings that cannot run (a bad value, or a run folder that does not fit them)."""


class StaleRunError(ConfigError):
    """The run folder holds a run started with other settings; ``changed`` maps each differing
    field to its (recorded, requested) values."""

    def __init__(self, build: Callable[[Namer], str], changed: dict[str, tuple]):
        self.changed = changed
        super().__init__(build)


class TrainingCollapsed(RunError, RuntimeError):
    """The collapse guard stopped a run at chance; its history and backup are kept."""


__all__ = ["ConfigError", "Namer", "RunError", "SWITCHES", "StaleRunError", "TrainingCollapsed", "field_name"]
