"""Alignment and statistics shared by the training and the attack packages.

numpy and scipy only: importing this module loads neither TensorFlow nor torch.
"""
from __future__ import annotations

import os
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from scipy import stats

from harmonization.memory import retain_freed_memory

HUMAN_CEILING = 0.65753
"""Mean Spearman correlation between ClickMe raters: the best a model can reach."""


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


def _sortable_keys(x: np.ndarray) -> np.ndarray:
    """Map float32 values to uint32 keys whose unsigned order is the float order (-0.0 == +0.0)."""
    bits = (x + np.float32(0)).view(np.uint32)
    flip = (bits.view(np.int32) >> 31).view(np.uint32)
    flip |= np.uint32(0x80000000)
    flip ^= bits
    return flip


def _sort_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row argsort and the sorted sort keys; float32 rows take two 16-bit radix passes (O(n))."""
    if x.dtype != np.float32:
        x = x + 0.0  # -0.0 becomes +0.0
        order = np.argsort(x, axis=1, kind="stable")
        return order, np.take_along_axis(x, order, axis=1)
    keys = _sortable_keys(x)
    halves = keys.view(np.uint16).reshape(*keys.shape, 2)
    low, high = (halves[..., 0], halves[..., 1]) if sys.byteorder == "little" else (halves[..., 1], halves[..., 0])
    order = np.argsort(low, axis=1, kind="stable")
    by_high = np.argsort(np.take_along_axis(high, order, axis=1), axis=1, kind="stable")
    order = np.take_along_axis(order, by_high, axis=1)
    return order, np.take_along_axis(keys, order, axis=1)


def _doubled_sorted_ranks(sorted_keys: np.ndarray) -> np.ndarray:
    """Twice the average rank (ties averaged, 1-based) of each position of rows sorted ascending.

    Doubled ranks are integers, so the sums built from them below are exact in float64 for rows of up
    to 130,000 values (4 n^3 < 2^53; a 224x224 map has 50,176) and merely rounded beyond.
    """
    rows, n = sorted_keys.shape
    new_run = np.empty(sorted_keys.shape, dtype=bool)
    new_run[:, 0] = True
    np.not_equal(sorted_keys[:, 1:], sorted_keys[:, :-1], out=new_run[:, 1:])
    ranks = np.broadcast_to(np.arange(2.0, 2.0 * n + 1.0, 2.0), sorted_keys.shape)
    flat_new_run = new_run.ravel()
    starts = np.flatnonzero(flat_new_run)
    if starts.size == rows * n:
        return ranks
    if starts.size < rows * n // 2:  # mostly ties: one value per run, repeated over the run
        lengths = np.diff(starts, append=rows * n)
        doubled = (2 * (starts % n) + lengths + 1).astype(np.float64)
        return np.repeat(doubled, lengths).reshape(rows, n)
    ranks = ranks.copy()  # few ties: fix only the tied runs
    tied = np.flatnonzero(~flat_new_run)
    run = np.searchsorted(starts, tied, side="right") - 1
    run_start = starts[run]
    run_end = np.append(starts[1:], rows * n)[run]
    doubled = (2 * (run_start % n) + (run_end - run_start) + 1).astype(np.float64)
    flat = ranks.reshape(-1)
    flat[tied] = doubled
    flat[run_start] = doubled
    return ranks


def _spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of the doubled ranks, from exact sums (no centring pass)."""
    rows, n = a.shape
    order_a, sorted_a = _sort_rows(a)
    order_b, sorted_b = _sort_rows(b)
    ranks_a, ranks_b = _doubled_sorted_ranks(sorted_a), _doubled_sorted_ranks(sorted_b)
    offsets = np.arange(0, rows * n, n)[:, None]
    ranks_a_in_place = np.empty(rows * n)
    ranks_a_in_place[(order_a + offsets).ravel()] = ranks_a.ravel()
    ranks_a_in_b_order = ranks_a_in_place[(order_b + offsets).ravel()].reshape(rows, n)
    mean_square = n * (n + 1.0) ** 2  # doubled ranks always sum to n (n + 1)
    covariance = np.einsum("ij,ij->i", ranks_a_in_b_order, ranks_b) - mean_square
    variance_a = np.einsum("ij,ij->i", ranks_a, ranks_a) - mean_square
    variance_b = np.einsum("ij,ij->i", ranks_b, ranks_b) - mean_square
    with np.errstate(invalid="ignore", divide="ignore"):
        return covariance / np.sqrt(variance_a * variance_b)


def _as_rankable(x: np.ndarray) -> np.ndarray:
    """float32 stays float32 (fast radix path), exact small integers become float32, the rest float64.

    Integers that float64 cannot hold exactly (beyond 2**53, or Python ints in an object array) are
    replaced by their dense rank within their row first: the order, and so Spearman, is unchanged.
    """
    if x.dtype == np.float32 or x.dtype in (np.uint8, np.int8, np.uint16, np.int16, np.bool_):
        return np.ascontiguousarray(x, dtype=np.float32)
    exact = x.dtype.kind == "f" or x.size == 0 or (x.dtype.kind in "iu" and x.dtype.itemsize <= 4)
    if not exact and x.dtype.kind in "iuO":
        exact = x.dtype.kind != "O" and max(int(x.max()), -int(x.min())) <= 2**53
        if not exact:
            return np.stack([np.unique(row, return_inverse=True)[1].reshape(-1) for row in x]).astype(np.float64)
    return np.ascontiguousarray(x, dtype=np.float64)


def spearman(a: Any, b: Any, rows_per_chunk: int = 4) -> np.ndarray:
    """Per-sample Spearman correlation of two (N, ...) arrays, each sample flattened.

    Ties get averaged ranks, as in ``scipy.stats.spearmanr``. A sample in which either
    map is constant (or holds a NaN) has no correlation: its value is NaN, with a warning.
    Samples are ranked in chunks on all CPU cores (numpy releases the GIL while sorting); large
    inputs let the process keep freed memory for reuse (`harmonization.memory.retain_freed_memory`).
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim == 1:
        a, b = a[None], b[None]
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"batch sizes differ: {a.shape[0]} vs {b.shape[0]}")
    a = _as_rankable(a.reshape(a.shape[0], -1))
    b = _as_rankable(b.reshape(b.shape[0], -1))
    if a.shape != b.shape:
        raise ValueError(f"per-sample sizes differ: {a.shape[1]} vs {b.shape[1]}")
    undefined = (
        np.isnan(a).any(axis=1) | np.isnan(b).any(axis=1)
        | (a == a[:, :1]).all(axis=1) | (b == b[:, :1]).all(axis=1)
    )
    if undefined.any():
        warnings.warn(
            f"spearman: {int(undefined.sum())} of {len(a)} samples hold a constant or NaN map; "
            "their correlation is NaN",
            RuntimeWarning,
            stacklevel=2,
        )
    starts = range(0, len(a), rows_per_chunk)
    if a.size > 1 << 20:
        retain_freed_memory()

    def chunk(start: int) -> np.ndarray:
        return _spearman_rows(a[start:start + rows_per_chunk], b[start:start + rows_per_chunk])

    workers = min(os.cpu_count() or 1, len(starts))
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            rho = np.concatenate(list(pool.map(chunk, starts)))
    else:
        rho = np.concatenate([chunk(s) for s in starts]) if len(a) else np.zeros(0)
    rho[undefined] = np.nan
    return np.clip(rho, -1.0, 1.0)


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


def alignment_score(spearman_values: Any, ceiling: float = HUMAN_CEILING) -> float:
    """Mean of the non-NaN per-image Spearman values divided by the human ceiling."""
    values = np.asarray(spearman_values, dtype=np.float64).ravel()
    values = values[~np.isnan(values)]
    if values.size == 0:
        return float("nan")
    return float(values.mean() / ceiling)


def summarize(values: Any) -> dict[str, float]:
    """Count, mean, standard error, std (ddof=1) and median of the non-NaN values."""
    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[~np.isnan(values)]
    n = values.size
    if n == 0:
        return {"count": 0, "mean": float("nan"), "sem": float("nan"), "std": float("nan"),
                "median": float("nan")}
    std = float(values.std(ddof=1)) if n > 1 else float("nan")
    return {
        "count": int(n),
        "mean": float(values.mean()),
        "sem": std / np.sqrt(n) if n > 1 else float("nan"),
        "std": std,
        "median": float(np.median(values)),
    }


def _paired_finite(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y differ in length: {x.size} vs {y.size}")
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


def model_correlation(x: Any, y: Any) -> dict[str, float]:
    """Spearman rho and two-sided p across models (one value per model), ignoring NaN pairs."""
    x, y = _paired_finite(x, y)
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"rho": float("nan"), "p": float("nan"), "n": int(x.size)}
    result = stats.spearmanr(x, y)
    return {"rho": float(result.statistic), "p": float(result.pvalue), "n": int(x.size)}


def compare_groups(a: Any, b: Any) -> dict[str, float]:
    """Welch's t-test of group a against group b: t statistic, degrees of freedom, two-sided p."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if a.size < 2 or b.size < 2:
        return {"t": float("nan"), "df": float("nan"), "p": float("nan")}
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    if va + vb == 0:
        return {"t": float("nan"), "df": float("nan"), "p": float("nan")}
    result = stats.ttest_ind(a, b, equal_var=False)
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    return {"t": float(result.statistic), "df": float(df), "p": float(result.pvalue)}


def gaussian_kernel(size: int = 10, sigma: float = 10.0) -> np.ndarray:
    """A (size, size) Gaussian kernel normalised to sum 1: the ClickMe heatmap diffusion blur.

    Centred like TensorFlow's reference code: coordinates ``arange(size) - (size - 1) / 2``.
    """
    axis = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    kernel_1d = np.exp(-(axis**2) / (2.0 * sigma**2))
    kernel = np.outer(kernel_1d, kernel_1d)
    return (kernel / kernel.sum()).astype(np.float32)
