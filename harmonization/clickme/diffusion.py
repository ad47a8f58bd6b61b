"""The method's diffusion of raw ClickMe clicks into a human feature-importance map (docs/method.md).

Bilinear resize (half-pixel centres, no antialiasing) to ``DIFFUSION_SIZE`` x ``DIFFUSION_SIZE``,
convolution with the ``KERNEL_SIZE`` x ``KERNEL_SIZE`` Gaussian of sigma ``KERNEL_SIGMA`` (sum 1) with
TensorFlow's SAME zero padding, bilinear resize back to the image grid. The TensorFlow and the
torch readers each run these steps in their own framework, from these constants.
"""

from __future__ import annotations

import numpy as np

from harmonization.metrics import gaussian_kernel

DIFFUSION_SIZE = 64
KERNEL_SIZE = 10
KERNEL_SIGMA = 10.0


def diffusion_kernel() -> np.ndarray:
    """The (KERNEL_SIZE, KERNEL_SIZE) float32 blur of the diffusion."""
    return gaussian_kernel(KERNEL_SIZE, KERNEL_SIGMA)


def same_padding() -> tuple[int, int]:
    """(before, after) zero padding of SAME convolution with the even kernel: (4, 5)."""
    before = (KERNEL_SIZE - 1) // 2
    return before, KERNEL_SIZE - 1 - before
