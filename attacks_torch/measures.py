"""Per-image measures of a found perturbation: its size and its alignment with the human map."""

from __future__ import annotations

from typing import Any

import numpy as np

from harmonization.metrics import spearman


def _numpy(name: str, value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.dtype == object:
        raise ValueError(f"{name}: expected a numeric array or tensor")
    return array


def perturbation_measures(images: Any, adversarials: Any, heatmaps: Any, fooled: Any) -> dict[str, np.ndarray]:
    """L2, L-inf and adversarial alignment of ``adversarials - images``, per sample.

    images, adversarials: (N, 3, H, W) in [0, 1]; heatmaps: (N, H, W) or (N, 1, H, W) on the
    same grid; fooled: (N,) bool. Alignment is the Spearman correlation between
    ``|mean over channels of (x_adv - x)|`` and the heatmap. Every measure is NaN where not fooled;
    alignment is also NaN, without a warning, where the heatmap is constant (an image without a
    human map, such as a photo stored with an all-zero map).
    """
    x = _numpy("images", images).astype(np.float64)
    x_adv = _numpy("adversarials", adversarials).astype(np.float64)
    maps = _numpy("heatmaps", heatmaps).astype(np.float64)
    fooled = _numpy("fooled", fooled).astype(bool)
    if x.ndim != 4 or x.shape != x_adv.shape:
        raise ValueError(
            f"images and adversarials: expected equal (N, C, H, W) shapes, got {x.shape} and {x_adv.shape}"
        )
    if maps.ndim == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if maps.shape != (x.shape[0], *x.shape[2:]):
        raise ValueError(f"heatmaps: expected shape {(x.shape[0], *x.shape[2:])}, got {maps.shape}")
    if fooled.shape != (x.shape[0],):
        raise ValueError(f"fooled: expected shape ({x.shape[0]},), got {fooled.shape}")
    delta = (x_adv - x).reshape(x.shape[0], -1)
    l2 = np.sqrt((delta**2).sum(axis=1))
    linf = np.abs(delta).max(axis=1, initial=0.0)
    alignment = np.full(x.shape[0], np.nan)
    flat_maps = maps.reshape(maps.shape[0], -1)
    measured = fooled & ~(flat_maps == flat_maps[:, :1]).all(axis=1)
    if measured.any():
        mask = np.abs((x_adv - x).mean(axis=1))
        alignment[measured] = spearman(mask[measured], maps[measured])
    return {
        "l2": np.where(fooled, l2, np.nan),
        "linf": np.where(fooled, linf, np.nan),
        "alignment": alignment,
    }
