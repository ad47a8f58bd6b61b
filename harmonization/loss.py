"""The harmonization term (docs/method.md, "The loss"), in TensorFlow.

Maps are (N, H, W) or (N, H, W, 1) tensors. ``harmonization_loss`` compares a model's saliency
maps with human (ClickMe) maps: both are standardized and cut at zero, the human map is rescaled
to the saliency's peak, and the squared error is averaged over a Gaussian pyramid, weighted per
image by its token (1 = the image has a human map, 0 = it does not).
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import tensorflow as tf

STANDARDIZE_EPSILON = 1e-5
PEAK_EPSILON = 1e-6
DEFAULT_LEVELS = 5
WEIGHT_DECAY_EXCLUDE = ("bn/", "normalization", "norm", "Norm", "embed", "class_token")
"""Variables whose path contains one of these substrings get no weight decay."""

_BINOMIAL = np.array([1.0, 4.0, 6.0, 4.0, 1.0], dtype=np.float32)
_PYRAMID_KERNEL = (np.outer(_BINOMIAL, _BINOMIAL) / 256.0)[:, :, None, None]


def _as_nhwc(maps: tf.Tensor) -> tf.Tensor:
    maps = tf.convert_to_tensor(maps)
    if maps.shape.rank == 3:
        return maps[..., None]
    if maps.shape.rank == 4 and maps.shape[-1] == 1:
        return maps
    raise ValueError(f"maps must be (N, H, W) or (N, H, W, 1), got shape {maps.shape}")


def standardize_cut(maps: tf.Tensor, epsilon: float = STANDARDIZE_EPSILON) -> tf.Tensor:
    """Per map over H and W: relu((m - mean) / (population std + epsilon)); shape preserved."""
    maps = tf.convert_to_tensor(maps)
    axes = (1, 2)
    mean = tf.reduce_mean(maps, axes, keepdims=True)
    std = tf.math.reduce_std(maps, axes, keepdims=True)
    return tf.nn.relu((maps - mean) / (std + epsilon))


def pyramid(maps: tf.Tensor, levels: int = DEFAULT_LEVELS) -> list[tf.Tensor]:
    """Gaussian pyramid: level 0 is the map itself, each next level a 5x5 binomial blur at stride 2.

    Padding is SAME, so a 224 map gives 224, 112, 56, 28, 14 for levels 0..4. Each level keeps the
    rank of the input ((N, h, w) or (N, h, w, 1)).
    """
    if levels < 1:
        raise ValueError(f"levels must be at least 1, got {levels}")
    squeeze = tf.convert_to_tensor(maps).shape.rank == 3
    current = _as_nhwc(maps)
    kernel = tf.constant(_PYRAMID_KERNEL, dtype=current.dtype)
    out = [current]
    for _ in range(levels - 1):
        current = tf.nn.depthwise_conv2d(current, kernel, strides=(1, 2, 2, 1), padding="SAME")
        out.append(current)
    return [level[..., 0] for level in out] if squeeze else out


def harmonization_loss(
    saliency: tf.Tensor, heatmaps: tf.Tensor, tokens: tf.Tensor | None = None,
    levels: int = DEFAULT_LEVELS,
) -> tf.Tensor:
    """Token-weighted pyramid MSE between standardized-cut saliency and rescaled human maps.

    ``tokens`` (N,) weights each image (None = all ones); the mean runs over the whole batch, so
    an image with token 0 contributes zeros. The human map is rescaled to the saliency's peak with
    the saliency peak held constant (no gradient through it). Returns a float32 scalar.
    """
    saliency = tf.cast(_as_nhwc(saliency), tf.float32)
    heatmaps = tf.cast(_as_nhwc(heatmaps), tf.float32)
    if not saliency.shape[1:3].is_compatible_with(heatmaps.shape[1:3]):
        raise ValueError(
            f"saliency {saliency.shape[1:3]} and heatmaps {heatmaps.shape[1:3]} differ in size"
        )
    if tokens is None:
        tokens = tf.ones(tf.shape(saliency)[:1], tf.float32)
    tokens = tf.reshape(tf.cast(tokens, tf.float32), (-1, 1, 1, 1))
    saliency = standardize_cut(saliency)
    heatmaps = standardize_cut(heatmaps)
    saliency_peak = tf.stop_gradient(tf.reduce_max(saliency, (1, 2), keepdims=True)) + PEAK_EPSILON
    heatmaps = heatmaps / (tf.reduce_max(heatmaps, (1, 2), keepdims=True) + PEAK_EPSILON) * saliency_peak
    per_level = [
        tf.reduce_mean(tf.square(s - h) * tokens)
        for s, h in zip(pyramid(saliency, levels), pyramid(heatmaps, levels))
    ]
    return tf.add_n(per_level) / float(levels)


def decayed_variables(variables: Iterable[tf.Variable],
                      exclude: Iterable[str] = WEIGHT_DECAY_EXCLUDE) -> list[tf.Variable]:
    """The variables that get weight decay: those whose path holds none of ``exclude``."""
    exclude = tuple(exclude)
    return [v for v in variables if not any(word in _variable_path(v) for word in exclude)]


def weight_decay(variables: Iterable[tf.Variable]) -> tf.Tensor:
    """sum over variables of sum(w^2) / 2, in float32 (0 for an empty list)."""
    terms = [tf.nn.l2_loss(tf.cast(v, tf.float32)) for v in variables]
    return tf.add_n(terms) if terms else tf.constant(0.0)


def _variable_path(variable: tf.Variable) -> str:
    return str(getattr(variable, "path", None) or variable.name)
