"""The ClickMe geometry and diffusion in numpy: resizes with TensorFlow's sampling grid, the joint
crop and flip of image and map, the validation centre crop, the heatmap diffusion, and mixup.

Resizes use half-pixel centres without antialiasing (``tf.image.resize``'s bilinear and bicubic),
computed separably (a few weighted taps per output pixel), so the framework-neutral reader gives the
``tf.data`` reader's pixels up to float rounding. Images are float32 (H, W, C).
"""

from __future__ import annotations

import functools

import numpy as np

from harmonization.clickme.diffusion import DIFFUSION_SIZE, diffusion_kernel, same_padding

CENTER_CROP_FRACTION = 0.875
BICUBIC_A = -0.5  # Keys' cubic, as TensorFlow's half-pixel bicubic resize
BICUBIC_TABLE = 1024  # TensorFlow samples the cubic weights at this many steps per pixel


def _positions(size_in: int, size_out: int) -> np.ndarray:
    """Source coordinates of the output pixel centres, in float32 as TensorFlow computes them."""
    scale = np.float32(size_in) / np.float32(size_out)
    return ((np.arange(size_out, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)).astype(np.float64)


@functools.lru_cache(maxsize=512)
def _bilinear_taps(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices, weights), each (size_out, 2), of half-pixel bilinear sampling, edges clamped."""
    position = _positions(size_in, size_out)
    low = np.floor(position)
    fraction = position - low
    indices = np.clip(np.stack([low, low + 1], axis=1), 0, size_in - 1).astype(np.intp)
    return indices, np.stack([1.0 - fraction, fraction], axis=1).astype(np.float32)


def _cubic(distance: np.ndarray) -> np.ndarray:
    x = np.abs(distance)
    near = ((BICUBIC_A + 2) * x - (BICUBIC_A + 3)) * x * x + 1
    far = ((BICUBIC_A * x - 5 * BICUBIC_A) * x + 8 * BICUBIC_A) * x - 4 * BICUBIC_A
    return np.where(x <= 1, near, np.where(x < 2, far, 0.0))


@functools.lru_cache(maxsize=512)
def _bicubic_taps(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices, weights), each (size_out, 4), of half-pixel Keys bicubic sampling; taps outside
    the image get weight 0 and the others are renormalised (TensorFlow's half-pixel convention)."""
    position = _positions(size_in, size_out)
    base = np.floor(position)
    taps = base[:, None] + np.arange(-1, 3)[None, :]
    step = np.rint(((position - base) * BICUBIC_TABLE).astype(np.float32)) / BICUBIC_TABLE  # TF: a table
    weights = _cubic(step[:, None] - np.arange(-1, 3)[None, :])
    weights = np.where((taps >= 0) & (taps < size_in), weights, 0.0)
    weights = weights / weights.sum(axis=1, keepdims=True)
    return np.clip(taps, 0, size_in - 1).astype(np.intp), weights.astype(np.float32)


def _resample(array: np.ndarray, axis: int, taps: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    indices, weights = taps
    shape = [1] * array.ndim
    shape[axis] = len(weights)
    out = np.take(array, indices[:, 0], axis=axis) * weights[:, 0].reshape(shape)
    for k in range(1, indices.shape[1]):
        out += np.take(array, indices[:, k], axis=axis) * weights[:, k].reshape(shape)
    return out


def resize(array: np.ndarray, size: tuple[int, int], method: str = "bilinear") -> np.ndarray:
    """(H, W, C) float32 -> (size[0], size[1], C), half-pixel centres, no antialiasing."""
    taps = _bilinear_taps if method == "bilinear" else _bicubic_taps
    array = np.asarray(array, np.float32)
    rows = _resample(array, 0, taps(array.shape[0], size[0]))
    return _resample(rows, 1, taps(array.shape[1], size[1]))


Window = tuple[int, int, int, int]
"""(top, left, height, width) of a crop."""


def crop_resize_flip(
    image: np.ndarray, heatmap: np.ndarray, window: Window, flip: bool, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Crop both to ``window``, bilinear-resize to size x size, and mirror both when ``flip``."""
    top, left, height, width = window
    image = resize(image[top : top + height, left : left + width], (size, size))
    heatmap = resize(heatmap[top : top + height, left : left + width], (size, size))
    if flip:
        image, heatmap = image[:, ::-1], heatmap[:, ::-1]
    return np.ascontiguousarray(image), np.ascontiguousarray(heatmap)


def center_crop(
    image: np.ndarray, heatmap: np.ndarray, size: int, fraction: float = CENTER_CROP_FRACTION
) -> tuple[np.ndarray, np.ndarray]:
    """Central crop keeping ``fraction`` of each side; bicubic image (clipped to [0, 255]) and
    bilinear map resized to size x size (the validation split)."""
    height, width = image.shape[:2]
    crop_h = int(np.round(np.float32(height) * np.float32(fraction)))
    crop_w = int(np.round(np.float32(width) * np.float32(fraction)))
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    image = image[top : top + crop_h, left : left + crop_w]
    heatmap = heatmap[top : top + crop_h, left : left + crop_w]
    return (np.clip(resize(image, (size, size), "bicubic"), 0.0, 255.0), resize(heatmap, (size, size)))


CROP_ATTEMPTS = 10
CROP_DRAWS = 2 * CROP_ATTEMPTS + 3
"""Uniform [0, 1) numbers behind one training crop and flip: the attempts' aspect ratios, their
heights, the top and left placement, the flip."""
WIDTH_SLACK = 0.5 - 1e-7  # the widest height of an aspect: width + 0.5 - eps over the aspect


def crop_draws(rng: np.random.Generator) -> np.ndarray:
    """The ``CROP_DRAWS`` float64 numbers of one example's crop and flip, drawn before the image's
    size is known, so any reader (numpy or ``tf.data``) can turn them into the same window."""
    return rng.random(CROP_DRAWS)


def window_from_draws(
    draws: np.ndarray,
    height: int,
    width: int,
    area_range: tuple[float, float] = (0.08, 1.0),
    aspect_range: tuple[float, float] = (3 / 4, 4 / 3),
) -> Window:
    """An Inception crop from ``crop_draws``, as ``tf.image.sample_distorted_bounding_box`` makes
    one: attempt k takes an aspect ratio uniform in ``aspect_range`` and a height uniform among
    those whose area lies in ``area_range`` of the image (one more row when rounding fell short);
    the first attempt that fits is placed by the top and left draws, else the whole image. Every
    step is one IEEE float64 operation (``harmonization.data.augment`` repeats them in the graph,
    bit for bit)."""
    attempts = CROP_ATTEMPTS
    min_area, max_area = area_range[0] * height * width, area_range[1] * height * width
    aspect = aspect_range[0] + (aspect_range[1] - aspect_range[0]) * draws[:attempts]
    low = np.rint(np.sqrt(min_area / aspect))
    high = np.rint(np.sqrt(max_area / aspect))
    high = np.where(np.rint(high * aspect) > width, np.floor((width + WIDTH_SLACK) / aspect), high)
    low = np.minimum(low, high)
    crop_h = low + np.floor(draws[attempts : 2 * attempts] * (high - low + 1.0))
    crop_h = np.where(crop_h * np.rint(crop_h * aspect) < min_area, crop_h + 1.0, crop_h)
    crop_w = np.rint(crop_h * aspect)
    area = crop_h * crop_w
    fits = np.flatnonzero(
        (area >= min_area) & (area <= max_area) & (crop_h > 0) & (crop_h <= height) & (crop_w > 0) & (crop_w <= width)
    )
    if not len(fits):
        return 0, 0, height, width
    crop_h, crop_w = int(crop_h[fits[0]]), int(crop_w[fits[0]])
    top = int(np.floor(draws[2 * attempts] * (height - crop_h + 1)))
    left = int(np.floor(draws[2 * attempts + 1] * (width - crop_w + 1)))
    return top, left, crop_h, crop_w


def flip_from_draws(draws: np.ndarray) -> bool:
    """Whether the crop of ``crop_draws`` is mirrored."""
    return bool(draws[-1] < 0.5)


def diffuse(heatmap: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """The method's diffusion of raw clicks (H, W, 1): bilinear to 64x64, the 10x10 sigma-10
    blur with SAME zero padding, bilinear back to ``size`` (default H, W).

    Every step is element-wise numpy in a fixed order (the blur sums its 100 taps row by row in
    float64, then rounds to float32), so the result has the same bits on every machine; TensorFlow's
    ``conv2d`` does not (its last bit depends on the CPU kernel oneDNN or Eigen picks).
    """
    size = size or heatmap.shape[:2]
    small = resize(heatmap, (DIFFUSION_SIZE, DIFFUSION_SIZE))[..., 0]
    before, after = same_padding()
    padded = np.pad(small, ((before, after), (before, after))).astype(np.float64)
    kernel = diffusion_kernel().astype(np.float64)
    rows, cols = small.shape
    blurred = np.zeros(small.shape, np.float64)
    for i in range(kernel.shape[0]):
        for j in range(kernel.shape[1]):
            blurred += padded[i : i + rows, j : j + cols] * kernel[i, j]
    return resize(blurred.astype(np.float32)[..., None], size)


def mixup_draws(rng: np.random.Generator, n: int, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """(weight float32 (n,), order int64 (n,)) of mixup: one Beta(alpha, alpha) weight per sample
    and the permutation it is mixed with."""
    if alpha <= 0:
        raise ValueError(f"mixup alpha must be positive, got {alpha}")
    return rng.beta(alpha, alpha, size=n).astype(np.float32), rng.permutation(n)


def mixup(batch: dict, num_classes: int, weight: np.ndarray, order: np.ndarray) -> dict:
    """Mix a batch with its permutation ``order``, weight ``weight[i]`` for sample i, shared by
    image, heatmap and one-hot label; the token becomes token_i * token_j; labels float32 (N, C)."""
    labels = batch["label"]
    if labels.ndim == 1:
        labels = np.eye(num_classes, dtype=np.float32)[labels]

    def blend(x: np.ndarray) -> np.ndarray:
        w = weight.reshape((-1,) + (1,) * (x.ndim - 1))
        return (w * x + (1.0 - w) * x[order]).astype(np.float32)

    return {
        **batch,
        "image": blend(batch["image"]),
        "heatmap": blend(batch["heatmap"]),
        "label": blend(labels),
        "token": (batch["token"] * batch["token"][order]).astype(np.float32),
    }
