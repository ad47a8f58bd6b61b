"""Alignment and statistics shared by the training and the attack packages.

numpy and scipy only: importing this module loads neither TensorFlow nor torch.
"""
from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from scipy import stats

HUMAN_CEILING = 0.65753
"""Mean Spearman correlation between ClickMe raters: the best a model can reach."""


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
    """Map float32 values to uint32 keys whose unsigned order is the float order."""
    bits = x.view(np.uint32)
    return np.where(bits & 0x80000000, ~bits, bits | 0x80000000)


def _argsort_rows(x: np.ndarray) -> np.ndarray:
    """Stable argsort along axis 1; float32 rows go through a two-pass 16-bit radix sort (O(n))."""
    if x.dtype != np.float32:
        return np.argsort(x, axis=1, kind="stable")
    keys = _sortable_keys(x)
    order = np.argsort((keys & 0xFFFF).astype(np.uint16), axis=1, kind="stable")
    high = np.take_along_axis((keys >> 16).astype(np.uint16), order, axis=1)
    return np.take_along_axis(order, np.argsort(high, axis=1, kind="stable"), axis=1)


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n along axis 1, ties given their average rank (scipy's ``method='average'``)."""
    rows, n = x.shape
    order = _argsort_rows(x)
    ordered = np.take_along_axis(x, order, axis=1)
    ties = ordered[:, 1:] == ordered[:, :-1]
    if ties.any():
        position = np.broadcast_to(np.arange(n, dtype=np.int32), x.shape)
        run_starts = np.ones(x.shape, dtype=bool)
        run_starts[:, 1:] = ~ties
        run_ends = np.ones(x.shape, dtype=bool)
        run_ends[:, :-1] = ~ties
        start = np.maximum.accumulate(np.where(run_starts, position, 0), axis=1)
        end = np.minimum.accumulate(np.where(run_ends, position, n - 1)[:, ::-1], axis=1)[:, ::-1]
        sorted_ranks = (start + end) / 2.0 + 1.0
    else:
        sorted_ranks = np.broadcast_to(np.arange(1.0, n + 1.0), x.shape)
    ranks = np.empty(rows * n, dtype=np.float64)
    ranks[(order + np.arange(0, rows * n, n)[:, None]).ravel()] = sorted_ranks.ravel()
    return ranks.reshape(rows, n)


def _spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ra, rb = _average_ranks(a), _average_ranks(b)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    covariance = np.einsum("ij,ij->i", ra, rb)
    denominator = np.sqrt(np.einsum("ij,ij->i", ra, ra) * np.einsum("ij,ij->i", rb, rb))
    with np.errstate(invalid="ignore", divide="ignore"):
        return covariance / denominator


def _as_rankable(x: np.ndarray) -> np.ndarray:
    """float32 stays float32 (fast radix path), exact small integers become float32, the rest float64."""
    if x.dtype == np.float32 or x.dtype in (np.uint8, np.int8, np.uint16, np.int16, np.bool_):
        return np.ascontiguousarray(x, dtype=np.float32)
    return np.ascontiguousarray(x, dtype=np.float64)


def spearman(a: Any, b: Any, rows_per_chunk: int = 16) -> np.ndarray:
    """Per-sample Spearman correlation of two (N, ...) arrays, each sample flattened.

    Ties get averaged ranks, as in ``scipy.stats.spearmanr``. A sample in which either
    map is constant (or holds a NaN) has no correlation: its value is NaN, with a warning.
    Samples are ranked in chunks on all CPU cores (numpy releases the GIL while sorting).
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

    A pair with no pixel above the threshold in either map (constant maps) gives NaN.
    """
    intersection, size_a, size_b = _overlaps(a, b, percentile)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(size_a + size_b > 0, 2 * intersection / (size_a + size_b), np.nan)


def iou(a: Any, b: Any, percentile: float = 10) -> np.ndarray:
    """Per-sample intersection over union of the top-``percentile`` % pixels of each map."""
    intersection, size_a, size_b = _overlaps(a, b, percentile)
    union = size_a + size_b - intersection
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, intersection / union, np.nan)


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
