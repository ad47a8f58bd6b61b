"""Human alignment from saliency maps, framework-neutral: the one definition both sides score with.

``harmonize evaluate`` (Keras, ``harmonization.evaluation``) and ``attacks_torch.human`` (PyTorch)
each compute, per image, two evaluation saliency maps (|d score / d preprocessed input|, max over
channels; the score is the true-class logit or the true-class log-probability: docs/method.md,
"Human-alignment evaluation") and hand them here with the human maps on the same grid. numpy and
scipy only: importing this module loads neither TensorFlow nor torch.
"""

from __future__ import annotations

import numpy as np

from harmonization import metrics
from harmonization.clickme2.denominator import Denominator

GAMING_MARGIN = 0.1
"""Flag a model whose mean per-image Spearman of the logit saliency exceeds that of the
log-probability saliency by more than this (in Spearman units, not ceiling-normalised)."""

PER_IMAGE = ("spearman", "spearman_log_prob", "dice", "iou")
"""The per-image measures of :func:`per_image_alignment`."""


def per_image_alignment(
    logit_maps: np.ndarray, log_prob_maps: np.ndarray, heatmaps: np.ndarray, percentile: float = 10
) -> dict[str, np.ndarray]:
    """Spearman of each saliency with its human map, and Dice and IoU of the logit saliency's and
    the map's top ``percentile`` % pixels; (N, H, W) arrays in, (N,) arrays out (``PER_IMAGE``)."""
    if len(heatmaps) == 0:
        return {key: np.array([]) for key in PER_IMAGE}
    return {
        "spearman": metrics.spearman(logit_maps, heatmaps),
        "spearman_log_prob": metrics.spearman(log_prob_maps, heatmaps),
        "dice": metrics.dice(logit_maps, heatmaps, percentile),
        "iou": metrics.iou(logit_maps, heatmaps, percentile),
    }


def _nanmean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


def gaming(
    spearman: np.ndarray, spearman_log_prob: np.ndarray, gaming_margin: float = GAMING_MARGIN
) -> tuple[float, bool]:
    """(mean Spearman of the logit saliency minus that of the log-prob saliency, gap > margin)."""
    gap = metrics.summarize(spearman)["mean"] - metrics.summarize(spearman_log_prob)["mean"]
    return float(gap), bool(gap > gaming_margin)


def output_activation(outputs: np.ndarray, tolerance: float = 1e-3) -> str | None:
    """ "softmax" when every row of ``outputs`` (N, C) is a probability vector, "log_softmax" when
    every row is a log-probability vector, else None (logits)."""
    outputs = np.asarray(outputs, np.float64)
    if outputs.ndim != 2 or outputs.shape[1] < 2 or not np.isfinite(outputs).all():
        return None
    if (outputs >= 0).all() and np.allclose(outputs.sum(1), 1.0, atol=tolerance):
        return "softmax"
    peak = outputs.max(1, keepdims=True)
    log_total = peak[:, 0] + np.log(np.exp(outputs - peak).sum(1))
    if (outputs <= 0).all() and np.allclose(log_total, 0.0, atol=tolerance):
        return "log_softmax"
    return None


def chance_fields(accuracy: float, head_classes: int, labels: np.ndarray | None = None) -> dict:
    """The near-chance fields: chance from the classes present in ``labels`` (at most the head's
    width; the head's width without labels); labels of one class cannot tell a trained model from a
    constant answer, so they always count as near chance."""
    classes = int(head_classes) if labels is None else metrics.chance_classes(labels, head_classes)
    return {
        "num_classes": classes,
        "head_classes": int(head_classes),
        "head_wider_than_data": int(head_classes) > classes,
        "near_chance": True if classes < 2 else metrics.near_chance(accuracy, classes),
        "chance_threshold": 1.0 if classes < 2 else metrics.chance_threshold(classes),
    }


def alignment_result(
    per_image: dict[str, np.ndarray],
    correct: np.ndarray,
    num_classes: int,
    gaming_margin: float = GAMING_MARGIN,
    denominator: Denominator | None = None,
    positions: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    head_activation: str | None = None,
) -> dict:
    """The result of an evaluation from its per-image measures over the mapped images
    (``per_image_alignment``) and whether each image (mapped or not) was classified correctly.

    ``num_classes`` is the width of the model's head; with ``labels`` (every image's class), chance
    is taken from the classes present in them, at most the head's width (:func:`chance_fields`).

    Keys: ``accuracy``, ``num_classes`` (the classes chance is taken from), ``head_classes``,
    ``head_wider_than_data``, ``head_activation`` (what the outputs are, :func:`output_activation`)
    and ``saliency_of_logits`` (False after a softmax head: the "logit" saliency is then a
    probability saliency and the gaming check says nothing), ``near_chance``, ``chance_threshold``,
    ``count``, ``mapped``,
    ``spearman`` / ``spearman_log_prob`` (``metrics.summarize`` dicts), ``alignment_score`` /
    ``alignment_score_log_prob`` (mean / human ceiling: ``denominator``, the constant by default;
    ``positions``, the mapped images' record indices, for a per-image ceiling), ``denominator``
    (which one), ``dice``, ``iou``, ``gaming_gap``,
    ``gaming``, ``gaming_margin`` and ``per_image`` (the arrays, with ``correct``).
    """
    correct = np.asarray(correct, dtype=bool)
    denominator = denominator or Denominator()
    accuracy = float(correct.mean()) if correct.size else float("nan")
    gap, gamed = gaming(per_image["spearman"], per_image["spearman_log_prob"], gaming_margin)
    return {
        "accuracy": accuracy,
        **chance_fields(accuracy, num_classes, labels),
        "head_activation": head_activation,
        "saliency_of_logits": head_activation != "softmax",
        "count": int(correct.size),
        "mapped": int(len(per_image["spearman"])),
        "spearman": metrics.summarize(per_image["spearman"]),
        "spearman_log_prob": metrics.summarize(per_image["spearman_log_prob"]),
        "alignment_score": denominator.alignment(per_image["spearman"], positions),
        "alignment_score_log_prob": denominator.alignment(per_image["spearman_log_prob"], positions),
        "denominator": denominator.describe(),
        "dice": _nanmean(per_image["dice"]),
        "iou": _nanmean(per_image["iou"]),
        "gaming_gap": gap,
        "gaming": gamed,
        "gaming_margin": float(gaming_margin),
        "per_image": {"correct": correct, **per_image},
    }
