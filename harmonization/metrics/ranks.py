"""Per-sample Spearman rank correlation of two batches of maps, ranked in O(n) per float32 row."""

from __future__ import annotations

import os
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from harmonization.memory import retain_freed_memory


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
        np.isnan(a).any(axis=1) | np.isnan(b).any(axis=1) | (a == a[:, :1]).all(axis=1) | (b == b[:, :1]).all(axis=1)
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
        return _spearman_rows(a[start : start + rows_per_chunk], b[start : start + rows_per_chunk])

    workers = min(os.cpu_count() or 1, len(starts))
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            rho = np.concatenate(list(pool.map(chunk, starts)))
    else:
        rho = np.concatenate([chunk(s) for s in starts]) if len(a) else np.zeros(0)
    rho[undefined] = np.nan
    return np.clip(rho, -1.0, 1.0)
