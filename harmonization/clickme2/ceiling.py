"""The lab's split-half human ceiling of one image.

Each iteration permutes the participants, takes the first ``n // 2`` as one half and the rest as
the other, adds ``n // 2`` more maps to each half drawn (with replacement) from that half, averages and blurs each half, brings both to the model frame (resize, centre crop) and
correlates them (Spearman). The image's ceiling is the mean over iterations (NaN ones left out).
"""

from __future__ import annotations

import warnings
import zlib

import numpy as np

from harmonization import metrics
from harmonization.clickme2.filtering import Settings
from harmonization.clickme2.maps import ImageMaps, to_model_frame


def split_halves(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """How many times each of ``n`` participants enters the test half and the reference half."""
    order = rng.permutation(n)
    half = n // 2
    weights = []
    for part in (order[:half], order[half:]):
        drawn = np.concatenate([part, rng.choice(part, size=half)]) if half else part[:0]
        weights.append(np.bincount(drawn, minlength=n))
    return weights[0], weights[1]


def split_half_score(maps: ImageMaps, test: np.ndarray, reference: np.ndarray, settings: Settings) -> float:
    """Spearman between the two halves' maps (weights from ``split_halves``) in the model frame."""
    if not test.any() or not reference.any():
        return float("nan")
    pair = np.tensordot(np.stack([test, reference]), maps.blurred, axes=1)  # sums: scale-free for Spearman
    pair = to_model_frame(pair, settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a constant half is a NaN, left out below
        return float(metrics.spearman(pair[:1], pair[1:])[0])


def image_rng(settings: Settings, image_id: str) -> np.random.Generator:
    """The random stream of one image: fixed by the seed and the image id (so a resumed
    conversion draws what an uninterrupted one would)."""
    return np.random.default_rng([settings.seed, zlib.crc32(image_id.encode("utf-8"))])


def split_half_ceiling(maps: ImageMaps, settings: Settings, rng: np.random.Generator) -> float:
    """Mean split-half Spearman over ``settings.null_iterations`` draws (NaN when none is defined)."""
    scores = [
        split_half_score(maps, *split_halves(maps.participants, rng), settings) for _ in range(settings.null_iterations)
    ]
    scores = [score for score in scores if not np.isnan(score)]
    return float(np.mean(scores)) if scores else float("nan")
