"""timm networks as both packages use them; no Keras, no TensorFlow.

One home for a timm network's input pipeline and its local checkpoints: the Keras pixel model that
harmonizes a timm network (``harmonization.models.timm_pixel``) and the attacks' ``PixelModel``
(``attacks_torch.models``) read the same data config, resize the same way and load the same files.
torch and timm are imported when a function needs them, so a TensorFlow run can read
``TIMM_PREFIX`` without loading torch.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn

TIMM_PREFIX = "timm:"
"""``harmonize train --model timm:NAME``: timm's network NAME, harmonized on the torch backend."""
INTERPOLATIONS = ("nearest", "bilinear", "bicubic")
_STATE_DICT_KEYS = ("state_dict", "model", "model_state_dict")


def timm_name(model: str) -> str | None:
    """NAME of a ``timm:NAME`` model, None for any other model name."""
    return model[len(TIMM_PREFIX):] if model.startswith(TIMM_PREFIX) else None


def resize(batch: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """(N, C, H, W) ``batch`` resized to ``size`` by ``mode`` (unchanged when it has that size).

    Smooth kernels are antialiased, as PIL's in timm's data pipeline. Each kernel's weights sum to 1,
    so resizing commutes with a per-channel normalisation (up to float rounding).
    """
    import torch.nn.functional as F

    if tuple(batch.shape[-2:]) == tuple(size):
        return batch
    smooth = mode != "nearest"
    return F.interpolate(batch, size=size, mode=mode, align_corners=False if smooth else None, antialias=smooth)


def check_name(name: str) -> None:
    """A ValueError naming the closest timm names when ``name`` is not a timm model."""
    import difflib

    import timm

    if timm.is_model(name):
        return
    close = difflib.get_close_matches(name.split(".")[0], timm.list_models(), n=5, cutoff=0.5)
    hint = f"; closest timm names: {', '.join(close)}" if close else ""
    raise ValueError(f"unknown timm model {name!r}{hint}")


def data_config(network: nn.Module) -> dict:
    """The network's own input pipeline (``timm.data.resolve_data_config``): input_size (H, W),
    interpolation, mean, std (RGB, for pixels in [0, 1]) and crop_pct."""
    from timm.data import resolve_data_config

    config = resolve_data_config({}, model=network)
    return {"input_size": tuple(int(s) for s in config["input_size"][1:]),
            "interpolation": config.get("interpolation", "bilinear"),
            "mean": tuple(float(m) for m in config["mean"]), "std": tuple(float(s) for s in config["std"]),
            "crop_pct": config.get("crop_pct")}


def read_state_dict(checkpoint: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a local checkpoint (``.safetensors``, or a torch file read with ``weights_only``).

    A torch file may hold the state dict itself or a dict with it under "state_dict", "model"
    or "model_state_dict". Nothing in the file is executed.
    """
    import torch

    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle errors have many types; name the file in every case, in one line
        first = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
        raise ValueError(f"checkpoint {str(path)!r} is not a readable torch weights file (only tensors and plain "
                         f"containers are read, nothing is unpickled): {first}") from error
    for key in _STATE_DICT_KEYS:
        if isinstance(data, Mapping) and isinstance(data.get(key), Mapping):
            data = data[key]
            break
    if not isinstance(data, Mapping) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ValueError(f"checkpoint {str(path)!r} holds no state dict of tensors")
    return dict(data)
