"""The pixel-space wrapper every attack runs on: [0, 1] RGB in, logits out."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

_MODES = ("nearest", "bilinear", "bicubic")


class PixelModel(nn.Module):
    """A classifier that takes float32 (N, 3, H, W) RGB pixels in [0, 1] and returns logits (N, C).

    The network's own input pipeline runs inside ``forward``: a resize to ``input_size`` when the
    images have another size (antialiased, PIL's kernels, as torchvision's ``resize``), then
    ``(x - mean) / std``. Gradients therefore flow to the pixels,
    and every attack budget is in [0, 1] pixel units whatever the network. The module is always in
    eval mode (``train()`` is a no-op) and its parameters never require gradients.
    """

    def __init__(
        self,
        network: nn.Module,
        *,
        name: str,
        input_size: Sequence[int] | None,
        mean: Sequence[float],
        std: Sequence[float],
        interpolation: str = "bilinear",
    ) -> None:
        super().__init__()
        if interpolation not in _MODES:
            raise ValueError(f"model {name!r}: interpolation must be one of {_MODES}, got {interpolation!r}")
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"model {name!r}: mean and std need 3 values each, std > 0; got {mean}, {std}")
        self.network = network
        self.name = name
        self.input_size = None if input_size is None else (int(input_size[0]), int(input_size[1]))
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.interpolation = interpolation
        self.register_buffer("_mean", torch.tensor(self.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(self.std).view(1, 3, 1, 1), persistent=False)
        self.network.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> PixelModel:
        """Stay in eval mode: attacks and their measurements need the deterministic network."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3 or not x.is_floating_point():
            raise ValueError(
                f"model {self.name!r}: expected float images (N, 3, H, W) in [0, 1], "
                f"got {tuple(x.shape)} {x.dtype}"
            )
        if self.input_size is not None and tuple(x.shape[-2:]) != self.input_size:
            smooth = self.interpolation != "nearest"  # antialiased kernels: PIL's, as timm's data pipeline
            x = F.interpolate(
                x, size=self.input_size, mode=self.interpolation, align_corners=False if smooth else None,
                antialias=smooth,
            )
        return self.network((x - self._mean) / self._std)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, input_size={self.input_size}, mean={self.mean}, std={self.std}"
