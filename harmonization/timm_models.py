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
    return model[len(TIMM_PREFIX) :] if model.startswith(TIMM_PREFIX) else None


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
    return {
        "input_size": tuple(int(s) for s in config["input_size"][1:]),
        "interpolation": config.get("interpolation", "bilinear"),
        "mean": tuple(float(m) for m in config["mean"]),
        "std": tuple(float(s) for s in config["std"]),
        "crop_pct": config.get("crop_pct"),
    }


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
        raise ValueError(
            f"checkpoint {str(path)!r} is not a readable torch weights file (only tensors and plain "
            f"containers are read, nothing is unpickled): {first}"
        ) from error
    for key in _STATE_DICT_KEYS:
        if isinstance(data, Mapping) and isinstance(data.get(key), Mapping):
            data = data[key]
            break
    if not isinstance(data, Mapping) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ValueError(f"checkpoint {str(path)!r} holds no state dict of tensors")
    return dict(data)


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:3])
    return f"{shown}, ... ({len(keys)} in all)" if len(keys) > 3 else shown


def load_timm_weights(
    network: nn.Module, name: str, checkpoint: str | Path | Mapping[str, torch.Tensor], *, new_head: bool = False
) -> None:
    """Load a local checkpoint (a file, see :func:`read_state_dict`, or a state dict) into timm's
    ``network`` strictly: every tensor the network has, no other, each of its shape.

    The one exception, only with ``new_head=True`` (``harmonize train --weights``, which fine-tunes
    an ImageNet checkpoint to a task's classes): classifier-head tensors of another shape keep the
    network's fresh initialisation. An attack never takes it: a random head would be attacked as if
    it were trained. A checkpoint that does not fit is a one-line ValueError naming the file and the
    first mismatching keys.
    """
    named = isinstance(checkpoint, Mapping)
    state = dict(checkpoint) if named else read_state_dict(checkpoint)
    where = "its state dict" if named else repr(str(checkpoint))
    own = network.state_dict()
    reshaped = {key for key in state if key in own and state[key].shape != own[key].shape}
    fresh: set[str] = set()
    if new_head:
        heads = network.pretrained_cfg.get("classifier") or ()
        heads = (heads,) if isinstance(heads, str) else tuple(heads)
        fresh = {key for key in reshaped if key.startswith(tuple(f"{head}." for head in heads))}
    fitting = {key: value for key, value in state.items() if key not in reshaped}
    result = network.load_state_dict(fitting, strict=False)  # torch's own count of what is missing
    problems = [
        f"{what} {_listed(sorted(keys))}"
        for what, keys in (
            ("missing", set(result.missing_keys) - reshaped),
            ("unexpected", result.unexpected_keys),
            ("of another shape", reshaped - fresh),
        )
        if keys
    ]
    if problems:
        raise ValueError(
            f"timm model {name!r}: weights {where} do not fit: {'; '.join(problems)} "
            "(a checkpoint of another architecture or head does not fit)"
        )
