"""timm models as pixel models, with local checkpoints loaded safely (``harmonization.timm_models``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import timm
import torch

from attacks_torch.models.pixel import PixelModel
from harmonization.timm_models import check_name, data_config, load_timm_weights


def load_timm(
    name: str,
    pretrained: bool = False,
    checkpoint: str | Path | Mapping[str, torch.Tensor] | None = None,
    num_classes: int | None = None,
    label: str | None = None,
) -> PixelModel:
    """Build the timm model ``name`` as a :class:`PixelModel` with its own data config.

    Resize (the config's input size and interpolation) and mean/std normalisation run inside the
    wrapper, which also keeps the config's crop_pct; an interpolation the wrapper cannot reproduce
    is refused. ``checkpoint`` is a local weights file or a state dict, loaded strictly
    (``harmonization.timm_models.load_timm_weights``); ``pretrained=True`` needs the model hub, which offline runs
    (HF_HUB_OFFLINE=1) cannot reach. ``label`` names the wrapper (default: ``name``).
    """
    check_name(name)
    kwargs = {} if num_classes is None else {"num_classes": int(num_classes)}
    try:
        network = timm.create_model(name, pretrained=pretrained, **kwargs)
    except (OSError, RuntimeError) as error:
        if not pretrained:
            raise
        raise RuntimeError(
            f"timm model {name!r}: pretrained weights could not be fetched from the model hub "
            f"({type(error).__name__}); download them elsewhere and pass checkpoint=PATH"
        ) from error
    if checkpoint is not None:
        load_timm_weights(network, name, checkpoint)
    return PixelModel(
        network, name=label or name, num_classes=getattr(network, "num_classes", None), **data_config(network)
    )
