"""Pixel-space model wrappers: RGB in [0, 1] NCHW in, logits out, the model's own normalisation inside."""
from __future__ import annotations

from pathlib import Path

from attacks_torch.models.keras_loader import KERAS_SUFFIXES, load_keras
from attacks_torch.models.lite0 import LITE0_NAME, PHOTOS, Photos, bundled_photos, load_efficientnet_lite0
from attacks_torch.models.pixel import PixelModel
from attacks_torch.models.timm_loader import load_timm, read_state_dict

__all__ = [
    "LITE0_NAME",
    "PHOTOS",
    "Photos",
    "PixelModel",
    "bundled_photos",
    "load_efficientnet_lite0",
    "load_keras",
    "load_model",
    "load_timm",
    "read_state_dict",
]


def load_model(spec: str) -> PixelModel:
    """A model from one string: a ``.keras``/``.h5`` path, ``efficientnet_lite0_imagenet``, or a timm name."""
    if Path(spec).suffix in KERAS_SUFFIXES:
        return load_keras(spec)
    if spec == LITE0_NAME:
        return load_efficientnet_lite0()
    return load_timm(spec)
