"""The pixel-space wrapper every attack runs on: [0, 1] RGB in, logits out."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from harmonization.timm_models import INTERPOLATIONS, resize

MAP_INTERPOLATION = "bilinear"
"""How human maps are brought to a model's grid: antialiased bilinear whatever the model (a map is a
smooth density; bicubic would overshoot below zero)."""


class PixelModel(nn.Module):
    """A classifier that takes float32 (N, 3, H, W) RGB pixels in [0, 1] and returns logits (N, C).

    The network's own input pipeline runs inside ``forward``: a resize to ``input_size`` when the
    images have another size (the model's ``interpolation``, antialiased like PIL's kernels), then
    ``(x - mean) / std``. Gradients therefore flow to the pixels, and every attack budget is in
    [0, 1] pixel units whatever the network. ``crop_pct`` is kept from the data config for callers
    that crop photos as the model was evaluated (the wrapper itself never crops). The module is
    always in eval mode (``train()`` is a no-op) and its parameters never require gradients.
    ``num_classes`` is the width of the logits, as the loader read it from the network (None:
    not known, and the sweep then cannot check the stimuli's labels against it).
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
        crop_pct: float | None = None,
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"model {name!r}: interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"model {name!r}: mean and std need 3 values each, std > 0; got {mean}, {std}")
        if crop_pct is not None and not 0 < crop_pct <= 1:
            raise ValueError(f"model {name!r}: crop_pct must be in (0, 1], got {crop_pct}")
        self.network = network
        self.name = name
        self.input_size = None if input_size is None else (int(input_size[0]), int(input_size[1]))
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.interpolation = interpolation
        self.crop_pct = None if crop_pct is None else float(crop_pct)
        self.num_classes = None if num_classes is None else int(num_classes)
        self.register_buffer("_mean", torch.tensor(self.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(self.std).view(1, 3, 1, 1), persistent=False)
        self.network.requires_grad_(False)
        super().train(False)

    @property
    def data_config(self) -> dict:
        """The input pipeline as timm names it: input_size (3, H, W), interpolation, crop_pct, mean, std."""
        size = None if self.input_size is None else (3, *self.input_size)
        return {
            "input_size": size,
            "interpolation": self.interpolation,
            "crop_pct": self.crop_pct,
            "mean": self.mean,
            "std": self.std,
        }

    def train(self, mode: bool = True) -> PixelModel:
        """Stay in eval mode: attacks and their measurements need the deterministic network."""
        return super().train(False)

    def resize_images(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) images in [0, 1] on the model's input grid (its interpolation), clipped to [0, 1].

        The same resampling ``forward`` applies, so attacking the result attacks the model's own input.
        """
        if self.input_size is None:
            return images
        return resize(images, self.input_size, self.interpolation).clamp(0.0, 1.0)

    def resize_maps(self, maps: torch.Tensor) -> torch.Tensor:
        """(N, H, W) human maps on the model's input grid by :data:`MAP_INTERPOLATION`."""
        if self.input_size is None:
            return maps
        return resize(maps[:, None], self.input_size, MAP_INTERPOLATION)[:, 0]

    def network_input(self, x: torch.Tensor) -> torch.Tensor:
        """What ``forward`` feeds the network for images ``x``: resized, then ``(x - mean) / std``."""
        if x.ndim != 4 or x.shape[1] != 3 or not x.is_floating_point():
            raise ValueError(
                f"model {self.name!r}: expected float images (N, 3, H, W) in [0, 1], got {tuple(x.shape)} {x.dtype}"
            )
        if self.input_size is not None:
            x = resize(x, self.input_size, self.interpolation)
        return (x - self._mean) / self._std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(self.network_input(x))

    def extra_repr(self) -> str:
        return (
            f"name={self.name!r}, input_size={self.input_size}, interpolation={self.interpolation!r}, "
            f"crop_pct={self.crop_pct}, mean={self.mean}, std={self.std}"
        )
