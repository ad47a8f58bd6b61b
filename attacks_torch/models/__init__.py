"""Pixel-space model wrappers: RGB in [0, 1] NCHW in, logits out, the model's own normalisation inside.

:func:`load_model` builds every model the attacks run on (timm names, the offline
efficientnet-lite0, Keras files, published harmonized models, robustness and torchvision
checkpoints); :func:`model_identity` says by content what it would build. Both read the table of
model sources (:mod:`.registry`); :func:`register_source` adds one.
"""

from __future__ import annotations

from attacks_torch.models.factory import WEIGHTS, load_model, model_identity, model_kind
from attacks_torch.models.keras_loader import KERAS_SUFFIXES, load_keras
from attacks_torch.models.lite0 import LITE0_NAME
from attacks_torch.models.pixel import INTERPOLATIONS, MAP_INTERPOLATION, PixelModel
from attacks_torch.models.registry import LoadOptions, ModelSource, model_source, register_source
from attacks_torch.models.timm_loader import load_timm
from harmonization.model_names import parse_published
from harmonization.timm_models import read_state_dict

__all__ = [
    "INTERPOLATIONS",
    "KERAS_SUFFIXES",
    "LITE0_NAME",
    "LoadOptions",
    "MAP_INTERPOLATION",
    "ModelSource",
    "PixelModel",
    "WEIGHTS",
    "load_keras",
    "load_model",
    "load_timm",
    "model_identity",
    "model_kind",
    "model_source",
    "parse_published",
    "read_state_dict",
    "register_source",
]
