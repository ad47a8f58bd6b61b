"""Summaries over images and models: the alignment score, mean and standard error, Spearman
across models, Welch's t-test between groups."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

HUMAN_CEILING = 0.65753
"""Mean Spearman correlation between ClickMe raters: the best a model can reach."""


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
        return {"count": 0, "mean": float("nan"), "sem": float("nan"), "std": float("nan"), "median": float("nan")}
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
