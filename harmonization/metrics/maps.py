"""Comparing two batches of maps by their top pixels (Dice, IoU), and the Gaussian blur that
makes ClickMe's clicks into heatmaps."""

from __future__ import annotations

from typing import Any

import numpy as np


def _flatten_pairs(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim == 1:
        a, b = a[None], b[None]
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"batch sizes differ: {a.shape[0]} vs {b.shape[0]}")
    a = a.reshape(a.shape[0], -1)
    b = b.reshape(b.shape[0], -1)
    if a.shape != b.shape:
        raise ValueError(f"per-sample sizes differ: {a.shape[1]} vs {b.shape[1]}")
    return a, b


def _binarize_top(maps: np.ndarray, percentile: float) -> np.ndarray:
    threshold = np.percentile(maps, 100.0 - percentile, axis=1, keepdims=True)
    return maps > threshold


def _overlaps(a: Any, b: Any, percentile: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not 0 < percentile < 100:
        raise ValueError(f"percentile must be in (0, 100), got {percentile}")
    a, b = _flatten_pairs(a, b)
    mask_a, mask_b = _binarize_top(a, percentile), _binarize_top(b, percentile)
    intersection = (mask_a & mask_b).sum(axis=1).astype(np.float64)
    return intersection, mask_a.sum(axis=1).astype(np.float64), mask_b.sum(axis=1).astype(np.float64)


def dice(a: Any, b: Any, percentile: float = 10) -> np.ndarray:
    """Per-sample Dice of the top-``percentile`` % pixels of each map (above its (100-p)th percentile).

    Undefined, so NaN, where either map has no pixel above its threshold: a constant (all-zero)
    map or one holding a NaN has no top pixels to overlap with.
    """
    intersection, size_a, size_b = _overlaps(a, b, percentile)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((size_a > 0) & (size_b > 0), 2 * intersection / (size_a + size_b), np.nan)


def iou(a: Any, b: Any, percentile: float = 10) -> np.ndarray:
    """Per-sample intersection over union of the top-``percentile`` % pixels of each map (NaN where
    undefined, as for :func:`dice`)."""
    intersection, size_a, size_b = _overlaps(a, b, percentile)
    union = size_a + size_b - intersection
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((size_a > 0) & (size_b > 0), intersection / union, np.nan)


def gaussian_kernel(size: int = 10, sigma: float = 10.0) -> np.ndarray:
    """A (size, size) Gaussian kernel normalised to sum 1: the ClickMe heatmap diffusion blur.

    Centred like TensorFlow's reference code: coordinates ``arange(size) - (size - 1) / 2``.
    """
    axis = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    kernel_1d = np.exp(-(axis**2) / (2.0 * sigma**2))
    kernel = np.outer(kernel_1d, kernel_1d)
    return (kernel / kernel.sum()).astype(np.float32)
