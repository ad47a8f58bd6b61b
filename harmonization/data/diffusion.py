"""The ClickMe heatmap "diffusion" of the method (method.md section 3), batched in TensorFlow.

Bilinear resize to 64x64, blur with the 10x10 sigma-10 Gaussian of
``harmonization.metrics.gaussian_kernel`` (sum 1, SAME zero padding), bilinear resize back.
"""
from __future__ import annotations

import tensorflow as tf

from harmonization.metrics import gaussian_kernel

DIFFUSION_SIZE = 64
KERNEL_SIZE = 10
KERNEL_SIGMA = 10.0


def diffuse_heatmaps(heatmaps: tf.Tensor, size: tuple[int, int] | None = None) -> tf.Tensor:
    """Diffuse float heatmaps (N, H, W, 1) or (H, W, 1); output at ``size`` (default: input H, W)."""
    heatmaps = tf.convert_to_tensor(heatmaps, tf.float32)
    batched = heatmaps.shape.rank == 4
    if not batched:
        heatmaps = heatmaps[None]
    if size is None:
        size = (tf.shape(heatmaps)[1], tf.shape(heatmaps)[2])
    kernel = tf.constant(gaussian_kernel(KERNEL_SIZE, KERNEL_SIGMA))[:, :, None, None]
    small = tf.image.resize(heatmaps, (DIFFUSION_SIZE, DIFFUSION_SIZE), method="bilinear")
    blurred = tf.nn.conv2d(small, kernel, strides=1, padding="SAME")
    out = tf.image.resize(blurred, size, method="bilinear")
    return out if batched else out[0]
