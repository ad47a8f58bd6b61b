"""Joint image/heatmap geometry: Inception random crop + flip (train), center crop (val), resize (test).

Every function takes an image (H, W, 3) and its heatmap (H, W, 1) and moves both with the same
window and the same flip, so the human map stays registered to the image.
"""
from __future__ import annotations

import tensorflow as tf

from harmonization.inputs.transforms import CENTER_CROP_FRACTION


def random_crop_flip(
    image: tf.Tensor, heatmap: tf.Tensor, seed: tf.Tensor, size: int,
    area_range: tuple[float, float] = (0.08, 1.0), aspect_range: tuple[float, float] = (3 / 4, 4 / 3),
) -> tuple[tf.Tensor, tf.Tensor]:
    """Inception-style crop (area, aspect) and a coin-flip horizontal flip, resized to size x size.

    ``seed`` is a stateless seed (shape [2] integers): the same seed gives the same window and flip.
    """
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    begin, extent, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image), bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=crop_seed,
        min_object_covered=0.0, aspect_ratio_range=aspect_range, area_range=area_range,
        max_attempts=10, use_image_if_no_bounding_boxes=True,
    )
    top, left, height, width = begin[0], begin[1], extent[0], extent[1]
    image = image[top:top + height, left:left + width]
    heatmap = heatmap[top:top + height, left:left + width]
    image = tf.image.resize(image, (size, size), method="bilinear")
    heatmap = tf.image.resize(heatmap, (size, size), method="bilinear")
    flip = tf.random.stateless_uniform([], flip_seed) < 0.5
    return tf.cond(flip, lambda: (image[:, ::-1], heatmap[:, ::-1]), lambda: (image, heatmap))


def center_crop(
    image: tf.Tensor, heatmap: tf.Tensor, size: int, fraction: float = CENTER_CROP_FRACTION,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Central crop keeping ``fraction`` of each side, then bicubic (image, clipped to [0, 255]) and
    bilinear (heatmap) resize to size x size."""
    shape = tf.shape(image)
    crop_h = tf.cast(tf.round(tf.cast(shape[0], tf.float32) * fraction), tf.int32)
    crop_w = tf.cast(tf.round(tf.cast(shape[1], tf.float32) * fraction), tf.int32)
    top, left = (shape[0] - crop_h) // 2, (shape[1] - crop_w) // 2
    image = image[top:top + crop_h, left:left + crop_w]
    heatmap = heatmap[top:top + crop_h, left:left + crop_w]
    image = tf.clip_by_value(tf.image.resize(image, (size, size), method="bicubic"), 0.0, 255.0)
    return image, tf.image.resize(heatmap, (size, size), method="bilinear")


def resize_pair(image: tf.Tensor, heatmap: tf.Tensor, size: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Bilinear resize of both to size x size, no crop (stimulus sets)."""
    return (tf.image.resize(image, (size, size), method="bilinear"),
            tf.image.resize(heatmap, (size, size), method="bilinear"))
