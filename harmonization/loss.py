"""The harmonization term (docs/method.md, "The loss"), written once in ``keras.ops``.

It runs on whichever Keras backend is active (TensorFlow, JAX, torch). Maps are (N, H, W) or
(N, H, W, 1) tensors. ``harmonization_loss`` compares a model's saliency maps with human (ClickMe)
maps: both are standardized and cut at zero, the human map is rescaled to the saliency's peak,
and the squared error is averaged over a Gaussian pyramid, weighted per image by its token
(1 = the image has a human map, 0 = it does not).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from keras import ops

STANDARDIZE_EPSILON = 1e-5
PEAK_EPSILON = 1e-6
DEFAULT_LEVELS = 5
WEIGHT_DECAY_EXCLUDE = ("bn/", "normalization", "norm", "Norm", "embed", "class_token")
"""Variables whose path contains one of these substrings get no weight decay."""

_BINOMIAL = np.array([1.0, 4.0, 6.0, 4.0, 1.0], dtype=np.float32)
_PYRAMID_KERNEL = (np.outer(_BINOMIAL, _BINOMIAL) / 256.0)[:, :, None, None]


def _as_nhwc(maps):
    maps = ops.convert_to_tensor(maps)
    if len(maps.shape) == 3:
        return ops.expand_dims(maps, -1)
    if len(maps.shape) == 4 and maps.shape[-1] == 1:
        return maps
    raise ValueError(f"maps must be (N, H, W) or (N, H, W, 1), got shape {tuple(maps.shape)}")


def _std(maps, axes: tuple[int, ...]):
    """Population std whose gradient is 0 (not NaN) where the map is flat."""
    variance = ops.var(maps, axis=axes, keepdims=True)
    positive = variance > 0
    return ops.where(positive, ops.sqrt(ops.where(positive, variance, 1.0)), 0.0)


def standardize_cut(maps, epsilon: float = STANDARDIZE_EPSILON):
    """Per map over H and W: relu((m - mean) / (population std + epsilon)); shape preserved."""
    maps = ops.convert_to_tensor(maps)
    axes = (1, 2)
    mean = ops.mean(maps, axis=axes, keepdims=True)
    return ops.relu((maps - mean) / (_std(maps, axes) + epsilon))


def pyramid(maps, levels: int = DEFAULT_LEVELS) -> list:
    """Gaussian pyramid: level 0 is the map itself, each next level a 5x5 binomial blur at stride 2.

    Padding is SAME (TensorFlow's convention on every backend), so a 224 map gives 224, 112, 56,
    28, 14 for levels 0..4. Each level keeps the rank of the input ((N, h, w) or (N, h, w, 1)).
    """
    if levels < 1:
        raise ValueError(f"levels must be at least 1, got {levels}")
    squeeze = len(ops.convert_to_tensor(maps).shape) == 3
    current = _as_nhwc(maps)
    kernel = ops.convert_to_tensor(_PYRAMID_KERNEL, dtype=current.dtype)
    out = [current]
    for _ in range(levels - 1):
        current = ops.depthwise_conv(current, kernel, strides=2, padding="same", data_format="channels_last")
        out.append(current)
    return [level[..., 0] for level in out] if squeeze else out


def _check_sizes(saliency, heatmaps) -> None:
    known = [(a, b) for a, b in zip(saliency.shape[1:3], heatmaps.shape[1:3]) if a is not None and b is not None]
    if any(a != b for a, b in known):
        raise ValueError(
            f"saliency {tuple(saliency.shape[1:3])} and heatmaps {tuple(heatmaps.shape[1:3])} differ in size"
        )


def harmonization_loss(saliency, heatmaps, tokens=None, levels: int = DEFAULT_LEVELS):
    """Token-weighted pyramid MSE between standardized-cut saliency and rescaled human maps.

    ``tokens`` (N,) weights each image (None = all ones); the mean runs over the whole batch, so
    an image with token 0 contributes zeros. The human map is rescaled to the saliency's peak with
    the saliency peak held constant (no gradient through it). Returns a float32 scalar.
    """
    saliency = ops.cast(_as_nhwc(saliency), "float32")
    heatmaps = ops.cast(_as_nhwc(heatmaps), "float32")
    _check_sizes(saliency, heatmaps)
    if tokens is None:
        tokens = ops.ones(ops.shape(saliency)[:1], "float32")
    tokens = ops.reshape(ops.cast(tokens, "float32"), (-1, 1, 1, 1))
    saliency = standardize_cut(saliency)
    heatmaps = standardize_cut(heatmaps)
    saliency_peak = ops.stop_gradient(ops.max(saliency, axis=(1, 2), keepdims=True)) + PEAK_EPSILON
    heatmaps = heatmaps / (ops.max(heatmaps, axis=(1, 2), keepdims=True) + PEAK_EPSILON) * saliency_peak
    total = 0.0
    for s, h in zip(pyramid(saliency, levels), pyramid(heatmaps, levels)):
        total = total + ops.mean(ops.square(s - h) * tokens)
    return total / float(levels)


def decays(path: str, exclude: Iterable[str] = WEIGHT_DECAY_EXCLUDE) -> bool:
    """Whether the variable at ``path`` gets weight decay: its path holds none of ``exclude``."""
    return not any(word in path for word in exclude)


def decayed_variables(variables: Iterable, exclude: Iterable[str] = WEIGHT_DECAY_EXCLUDE) -> list:
    """The variables that get weight decay: those whose path holds none of ``exclude``."""
    exclude = tuple(exclude)
    return [v for v in variables if decays(_variable_path(v), exclude)]


def weight_decay(variables: Iterable):
    """sum over variables of sum(w^2) / 2, in float32 (0 for an empty list)."""
    total = ops.convert_to_tensor(0.0, "float32")
    for variable in variables:
        total = total + 0.5 * ops.sum(ops.square(ops.cast(variable, "float32")))
    return total


def _variable_path(variable) -> str:
    return str(getattr(variable, "path", None) or variable.name)
