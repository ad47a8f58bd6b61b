"""Alignment and statistics shared by the training and the attack packages.

numpy and scipy only: importing this package loads neither TensorFlow nor torch. ``ranks``: the
per-sample rank correlation of two batches of maps; ``maps``: their top-pixel overlap (Dice, IoU)
and the ClickMe blur kernel; ``statistics``: summaries over images and models; ``chance``: chance
accuracy and the near-chance test.
"""

from harmonization.metrics.chance import (
    CHANCE_MARGIN,
    chance_classes,
    chance_threshold,
    near_chance,
)
from harmonization.metrics.maps import dice, gaussian_kernel, iou
from harmonization.metrics.ranks import spearman
from harmonization.metrics.statistics import (
    HUMAN_CEILING,
    alignment_score,
    compare_groups,
    model_correlation,
    summarize,
)

__all__ = [
    "CHANCE_MARGIN",
    "HUMAN_CEILING",
    "alignment_score",
    "chance_classes",
    "chance_threshold",
    "compare_groups",
    "dice",
    "gaussian_kernel",
    "iou",
    "model_correlation",
    "near_chance",
    "spearman",
    "summarize",
]
