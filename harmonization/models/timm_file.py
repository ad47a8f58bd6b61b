"""A harmonized timm network read back from the ``.safetensors`` file ``harmonize train --model
timm:NAME`` writes (``timm_pixel.save_timm``), on the torch backend.

The file's header metadata names the timm architecture ("timm_model") and the pixel size it was
trained at ("image_size"); the architecture is rebuilt by that name with timm and the tensors are
loaded strictly (every key, every shape, the classifier head's width included). Nothing in the
file is executed: the header is JSON, the tensors are raw arrays.
"""

from __future__ import annotations

import json
import os
import struct

import keras

from harmonization.models.legacy_h5 import ModelFileError

MAX_HEADER_BYTES = 100 * 2**20
"""The largest header a safetensors file may declare (the format's own limit)."""


def read_header(path: str) -> dict:
    """The JSON header of a ``.safetensors`` file: each tensor's dtype and shape by key, and the
    ``__metadata__`` strings."""
    try:
        with open(path, "rb") as handle:
            (size,) = struct.unpack("<Q", handle.read(8))
            if size > min(MAX_HEADER_BYTES, os.path.getsize(path) - 8):
                raise ValueError(f"declares a {size:,}-byte header")
            header = json.loads(handle.read(size))
        if not isinstance(header, dict):
            raise ValueError("its header is not a JSON object")
    except (struct.error, ValueError, UnicodeDecodeError) as error:
        raise ModelFileError(f"model file {path}: not a safetensors file ({error})") from None
    return header


def _head_width(path: str, header: dict, name: str) -> int:
    """The number of classes of the classifier head the file holds for timm's ``name``."""
    from timm.models import get_pretrained_cfg_value

    heads = get_pretrained_cfg_value(name, "classifier") or ()
    heads = (heads,) if isinstance(heads, str) else tuple(heads)
    for head in heads:
        shape = (header.get(f"{head}.weight") or {}).get("shape")
        if shape:
            return int(shape[0])
    raise ModelFileError(
        f"model file {path}: holds no classifier head of timm model {name!r} "
        f"({', '.join(f'{head}.weight' for head in heads) or 'none known'})"
    )


def load_timm_file(path: str, num_classes: int | None = None, image_size: int | None = None) -> keras.Model:
    """The pixel model saved in ``path``, rebuilt from its timm name and loaded strictly.

    ``num_classes``: checked against the file's head (the head's width when None). ``image_size``:
    the pixel size of the model's input (default: the size recorded in the file).
    """
    from harmonization.models.timm_pixel import build_timm
    from harmonization.timm_models import check_name

    if keras.backend.backend() != "torch":
        raise ModelFileError(
            f"model file {path}: a timm network, which runs on the torch backend "
            f"only (KERAS_BACKEND=torch), not on {keras.backend.backend()!r}"
        )
    header = read_header(path)
    metadata = header.get("__metadata__") if isinstance(header.get("__metadata__"), dict) else {}
    name = metadata.get("timm_model")
    if not name:
        raise ModelFileError(
            f"model file {path}: its metadata names no timm model (files that "
            "`harmonize train --model timm:NAME` writes do)"
        )
    try:
        check_name(name)
    except ValueError as error:
        raise ModelFileError(f"model file {path}: {error}") from None
    width = _head_width(path, header, name)
    if num_classes is not None and num_classes != width:
        raise ModelFileError(f"model file {path}: holds a {width}-class head, not {num_classes}")
    if image_size is None:
        if not str(metadata.get("image_size", "")).isdigit():
            raise ModelFileError(f"model file {path}: records no image size: pass it (--image-size)")
        image_size = int(metadata["image_size"])
    return build_timm(name, width, image_size, weights=path)  # its errors name the file
