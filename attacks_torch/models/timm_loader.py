"""timm models as pixel models, with local checkpoints loaded safely."""
from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path

import timm
import torch
from timm.data import resolve_data_config

from attacks_torch.models.pixel import PixelModel

_STATE_DICT_KEYS = ("state_dict", "model", "model_state_dict")


def read_state_dict(checkpoint: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a local checkpoint (``.safetensors``, or a torch file read with ``weights_only``).

    A torch file may hold the state dict itself or a dict with it under "state_dict", "model"
    or "model_state_dict". Nothing in the file is executed.
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle errors have many types; name the file in every case
        raise ValueError(f"checkpoint {str(path)!r} is not a readable torch weights file: {error}") from error
    for key in _STATE_DICT_KEYS:
        if isinstance(data, Mapping) and isinstance(data.get(key), Mapping):
            data = data[key]
            break
    if not isinstance(data, Mapping) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ValueError(f"checkpoint {str(path)!r} holds no state dict of tensors")
    return dict(data)


def _check_name(name: str) -> None:
    if timm.is_model(name):
        return
    close = difflib.get_close_matches(name.split(".")[0], timm.list_models(), n=5, cutoff=0.5)
    hint = f"; closest timm names: {', '.join(close)}" if close else ""
    raise ValueError(f"unknown timm model {name!r}{hint}")


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
    is refused. ``checkpoint`` is a local weights file (see :func:`read_state_dict`) or a state
    dict, loaded strictly; ``pretrained=True`` needs the model hub, which offline runs
    (HF_HUB_OFFLINE=1) cannot reach. ``label`` names the wrapper (default: ``name``).
    """
    _check_name(name)
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
        state = checkpoint if isinstance(checkpoint, Mapping) else read_state_dict(checkpoint)
        where = "its state dict" if isinstance(checkpoint, Mapping) else repr(str(checkpoint))
        try:
            network.load_state_dict(state)
        except RuntimeError as error:
            raise ValueError(f"timm model {name!r}: checkpoint {where} does not fit: {error}") from error
    config = resolve_data_config({}, model=network)
    return PixelModel(
        network,
        name=label or name,
        input_size=config["input_size"][1:],
        mean=config["mean"],
        std=config["std"],
        interpolation=config.get("interpolation", "bilinear"),
        crop_pct=config.get("crop_pct"),
        num_classes=getattr(network, "num_classes", None),
    )
