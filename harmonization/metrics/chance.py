"""Chance accuracy: how many classes chance is taken from, and when an accuracy is near it."""

from __future__ import annotations

from typing import Any

import numpy as np

CHANCE_MARGIN = 0.2
"""How far above chance an accuracy must be, as a share of the way from chance to perfect, to count
as a trained model: below ``chance + CHANCE_MARGIN * (1 - chance)`` it is "near chance"."""


def chance_threshold(num_classes: int, margin: float = CHANCE_MARGIN) -> float:
    """The accuracy under which a ``num_classes``-way classifier counts as near chance."""
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    if not 0 <= margin < 1:
        raise ValueError(f"margin must be in [0, 1), got {margin}")
    chance = 1.0 / num_classes
    return chance + margin * (1.0 - chance)


def near_chance(accuracy: float, num_classes: int, margin: float = CHANCE_MARGIN) -> bool:
    """True when ``accuracy`` (a fraction) is below ``chance_threshold``, or is not a number.

    A model that has learnt nothing can still *look* better on alignment and tolerance (a dead
    network's gradient is whatever its initialisation makes it), so results of such a model are
    flagged as unreliable rather than reported.
    """
    accuracy = float(accuracy)
    return not np.isfinite(accuracy) or accuracy < chance_threshold(num_classes, margin)


def chance_classes(labels: Any, head_classes: int | None = None) -> int:
    """The number of classes chance is taken from: the distinct classes in ``labels`` (class
    indices), at most ``head_classes`` (the width of the model's head) when given.

    A model with a head wider than the data's classes is at chance at 1 / (classes in the data),
    not 1 / (head width): always answering one class of 4-class data scores 0.25 whatever the head.
    """
    present = int(np.unique(np.asarray(labels).reshape(-1)).size)
    return present if head_classes is None else min(present, int(head_classes))
