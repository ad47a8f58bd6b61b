"""Pixel-space model wrappers: RGB in [0, 1] NCHW in, logits out, the model's own normalisation inside.

:func:`load_model` builds every model the attacks run on (timm names, the offline
efficientnet-lite0, Keras files, published harmonized models); :func:`model_identity` says by
content what it would build.
"""
from __future__ import annotations

from attacks_torch.models.factory import WEIGHTS, load_model, model_identity, model_kind, parse_published
from attacks_torch.models.keras_loader import KERAS_SUFFIXES, load_keras
from attacks_torch.models.lite0 import LITE0_NAME
from attacks_torch.models.pixel import INTERPOLATIONS, MAP_INTERPOLATION, PixelModel
from attacks_torch.models.timm_loader import load_timm
from harmonization.timm_models import read_state_dict

__all__ = [
    "INTERPOLATIONS",
    "KERAS_SUFFIXES",
    "LITE0_NAME",
    "MAP_INTERPOLATION",
    "PixelModel",
    "WEIGHTS",
    "load_keras",
    "load_model",
    "load_timm",
    "model_identity",
    "model_kind",
    "parse_published",
    "read_state_dict",
]

