"""The ClickMe heatmap diffusion of the method (docs/method.md), batched in TensorFlow.

The steps and constants are those of :mod:`harmonization.clickme.diffusion`: bilinear resize to
64x64, the 10x10 sigma-10 Gaussian blur (sum 1, SAME zero padding), bilinear resize back.
"""

from __future__ import annotations

import tensorflow as tf

from harmonization.clickme.diffusion import DIFFUSION_SIZE, diffusion_kernel


def diffuse_heatmaps(heatmaps: tf.Tensor, size: tuple[int, int] | None = None) -> tf.Tensor:
    """Diffuse float heatmaps (N, H, W, 1) or (H, W, 1); output at ``size`` (default: input H, W)."""
    heatmaps = tf.convert_to_tensor(heatmaps, tf.float32)
    batched = heatmaps.shape.rank == 4
    if not batched:
        heatmaps = heatmaps[None]
    if size is None:
        size = (tf.shape(heatmaps)[1], tf.shape(heatmaps)[2])
    kernel = tf.constant(diffusion_kernel())[:, :, None, None]
    small = tf.image.resize(heatmaps, (DIFFUSION_SIZE, DIFFUSION_SIZE), method="bilinear")
    blurred = tf.nn.conv2d(small, kernel, strides=1, padding="SAME")
    out = tf.image.resize(blurred, size, method="bilinear")
    return out if batched else out[0]
