"""Joint image/heatmap geometry: Inception crop + flip drawn by the numpy core (train), center crop
(val), resize (test).

Every function takes an image (H, W, 3) and its heatmap (H, W, 1) and moves both with the same
window and the same flip, so the human map stays registered to the image.
"""

from __future__ import annotations

import tensorflow as tf

from harmonization.inputs.transforms import CENTER_CROP_FRACTION, CROP_ATTEMPTS, WIDTH_SLACK


def _window(
    draws: tf.Tensor, shape: tf.Tensor, area_range: tuple[float, float], aspect_range: tuple[float, float]
) -> tuple[tf.Tensor, ...]:
    """``transforms.window_from_draws`` in the graph, the same float64 operations in the same order
    (so the same window, bit for bit)."""
    attempts = CROP_ATTEMPTS
    height, width = tf.cast(shape[0], tf.float64), tf.cast(shape[1], tf.float64)
    min_area, max_area = area_range[0] * height * width, area_range[1] * height * width
    aspect = aspect_range[0] + (aspect_range[1] - aspect_range[0]) * draws[:attempts]
    low = tf.round(tf.sqrt(min_area / aspect))
    high = tf.round(tf.sqrt(max_area / aspect))
    high = tf.where(tf.round(high * aspect) > width, tf.floor((width + WIDTH_SLACK) / aspect), high)
    low = tf.minimum(low, high)
    crop_h = low + tf.floor(draws[attempts : 2 * attempts] * (high - low + 1.0))
    crop_h = tf.where(crop_h * tf.round(crop_h * aspect) < min_area, crop_h + 1.0, crop_h)
    crop_w = tf.round(crop_h * aspect)
    area = crop_h * crop_w
    fits = (
        (area >= min_area) & (area <= max_area) & (crop_h > 0) & (crop_h <= height) & (crop_w > 0) & (crop_w <= width)
    )
    first = tf.argmax(tf.cast(fits, tf.int32))
    crop_h = tf.where(fits[first], crop_h[first], height)
    crop_w = tf.where(fits[first], crop_w[first], width)
    top = tf.where(fits[first], tf.floor(draws[2 * attempts] * (height - crop_h + 1.0)), 0.0)
    left = tf.where(fits[first], tf.floor(draws[2 * attempts + 1] * (width - crop_w + 1.0)), 0.0)
    return tuple(tf.cast(value, tf.int32) for value in (top, left, crop_h, crop_w))


def planned_crop_flip(
    image: tf.Tensor,
    heatmap: tf.Tensor,
    draws: tf.Tensor,
    size: int,
    area_range: tuple[float, float] = (0.08, 1.0),
    aspect_range: tuple[float, float] = (3 / 4, 4 / 3),
) -> tuple[tf.Tensor, tf.Tensor]:
    """Inception-style crop (area, aspect) and horizontal flip, resized to size x size, from the
    framework-neutral core's ``crop_draws`` (float64 (CROP_DRAWS,)): the crop and flip the torch
    reader takes for the same example."""
    top, left, height, width = _window(draws, tf.shape(image), area_range, aspect_range)
    image = tf.image.resize(image[top : top + height, left : left + width], (size, size), method="bilinear")
    heatmap = tf.image.resize(heatmap[top : top + height, left : left + width], (size, size), method="bilinear")
    flip = draws[-1] < 0.5
    return tf.cond(flip, lambda: (image[:, ::-1], heatmap[:, ::-1]), lambda: (image, heatmap))


def center_crop(
    image: tf.Tensor,
    heatmap: tf.Tensor,
    size: int,
    fraction: float = CENTER_CROP_FRACTION,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Central crop keeping ``fraction`` of each side, then bicubic (image, clipped to [0, 255]) and
    bilinear (heatmap) resize to size x size."""
    shape = tf.shape(image)
    crop_h = tf.cast(tf.round(tf.cast(shape[0], tf.float32) * fraction), tf.int32)
    crop_w = tf.cast(tf.round(tf.cast(shape[1], tf.float32) * fraction), tf.int32)
    top, left = (shape[0] - crop_h) // 2, (shape[1] - crop_w) // 2
    image = image[top : top + crop_h, left : left + crop_w]
    heatmap = heatmap[top : top + crop_h, left : left + crop_w]
    image = tf.clip_by_value(tf.image.resize(image, (size, size), method="bicubic"), 0.0, 255.0)
    return image, tf.image.resize(heatmap, (size, size), method="bilinear")


def resize_pair(image: tf.Tensor, heatmap: tf.Tensor, size: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Bilinear resize of both to size x size, no crop (stimulus sets)."""
    return (
        tf.image.resize(image, (size, size), method="bilinear"),
        tf.image.resize(heatmap, (size, size), method="bilinear"),
    )
