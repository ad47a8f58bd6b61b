"""Reading tf.keras 2 HDF5 files (weights-only ``save_weights`` and full-model ``save``) with h5py.

Weights are matched to Keras 3 variables by their stored names, never by position: a legacy file
stores each layer's weights under names such as ``Transformer/encoderblock_0/.../query/kernel:0``,
and equal-shaped kernels (a transformer's query, key, value and output) would load silently
swapped if matched in order (docs/traps.md). Every variable must find exactly one stored array of
its shape, and every stored array must be used.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass

import h5py
import keras
import numpy as np

from harmonization.errors import ArgumentError


class ModelFileError(ArgumentError, ValueError):
    """A model file cannot be used: the message names the file and what is wrong, in one line."""


@dataclass(frozen=True)
class LegacyFile:
    """The contents of a tf.keras 2 HDF5 file: its model config (None for weights only) and weights."""

    path: str
    config: dict | None
    layer_names: tuple[str, ...]
    weights: Mapping[str, np.ndarray]  # "<layer>/<path inside the layer>" -> array


MAX_DATASET_BYTES = 8 * 2**30
"""The largest array a model file may declare (the largest published file holds 350 MB)."""


def check_contained(handle: h5py.File, path: str) -> None:
    """Refuse an HDF5 file that reads data from elsewhere (an external link, a dataset stored in
    external files, a virtual dataset) or declares an array too large to be real, naming the file
    and the object in one line."""

    def problem(name: str, link) -> str | None:  # a returned message stops the visit
        if isinstance(link, h5py.ExternalLink):
            return f"{name} is a link to {link.filename!r}: a model file must hold its own data"
        item = handle[name] if isinstance(link, h5py.HardLink) else None
        if not isinstance(item, h5py.Dataset):
            return None
        if item.is_virtual or item.external:
            stored = "a virtual dataset" if item.is_virtual else "stored in external files"
            return f"{name} is {stored}: a model file must hold its own data"
        if item.size * item.dtype.itemsize > MAX_DATASET_BYTES:
            return (
                f"{name} declares {item.size * item.dtype.itemsize / 2**30:.0f} GiB "
                f"(shape {item.shape}): not a real model file"
            )
        return None

    found = handle.visititems_links(problem)  # h5py cannot raise from inside the visit
    if found is not None:
        raise ModelFileError(f"model file {path}: {found}")


def check_h5_file(path: str | os.PathLike) -> None:
    """``check_contained`` for the HDF5 file at ``path`` before another reader (Keras) opens it;
    a file that is not HDF5 is left to that reader's own error."""
    path = os.fspath(path)
    if not h5py.is_hdf5(path):
        return
    with h5py.File(path, "r") as handle:
        check_contained(handle, path)


def _text(value) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def _layer_relative(layer: str, name: str) -> str:
    """``<layer>/<path inside the layer>`` (tf.keras may prefix a variable with a uniquified name)."""
    inside = name[len(layer) + 1 :] if name.startswith(layer + "/") else name.split("/", 1)[-1]
    return f"{layer}/{inside.removesuffix(':0')}"


def read_legacy_h5(path: str | os.PathLike) -> LegacyFile:
    """Read a legacy Keras HDF5 file whatever its name (the reference caches it without ``.h5``)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file {path}: no such file")
    try:
        with h5py.File(path, "r") as handle:
            check_contained(handle, path)
            config = handle.attrs.get("model_config")
            group = handle["model_weights"] if "model_weights" in handle else handle
            if "layer_names" not in group.attrs:
                raise ModelFileError(
                    f"model file {path}: an HDF5 file but not a Keras one "
                    "(no layer_names: not written by save or save_weights)"
                )
            layer_names = tuple(_text(name) for name in group.attrs["layer_names"])
            weights = {}
            for layer in layer_names:
                for name in group[layer].attrs.get("weight_names", ()):
                    name = _text(name)
                    weights[_layer_relative(layer, name)] = np.asarray(group[layer][name])
    except OSError as error:  # h5py: "file signature not found", "truncated file: eof = ..."
        reason = str(error).split("(", 1)[-1].rstrip(")") if "(" in str(error) else str(error)
        raise ModelFileError(
            f"model file {path}: not a readable HDF5 file ({reason}); truncated download or not a Keras .h5 file?"
        ) from None
    except KeyError as error:
        raise ModelFileError(f"model file {path}: damaged Keras HDF5 file ({error})") from None
    parsed = None
    if config is not None:
        try:
            parsed = json.loads(_text(config))
        except json.JSONDecodeError as error:
            raise ModelFileError(f"model file {path}: its model_config is not JSON ({error})") from None
    return LegacyFile(path, parsed, layer_names, weights)


def assign_by_name(variables: Mapping[str, keras.Variable], stored: LegacyFile) -> None:
    """Set each variable from the stored array of the same name; all must match, in name and shape."""
    missing = [name for name in variables if name not in stored.weights]
    unused = [name for name in stored.weights if name not in variables]
    if missing or unused:
        raise ModelFileError(
            f"model file {stored.path}: its weights do not fit the architecture "
            f"({len(missing)} missing, e.g. {missing[:2]}; {len(unused)} unexpected, e.g. {unused[:2]})"
        )
    for name, variable in variables.items():
        array = stored.weights[name]
        if tuple(array.shape) != tuple(variable.shape):
            raise ModelFileError(
                f"model file {stored.path}: weight {name} has shape "
                f"{tuple(array.shape)}, the architecture needs {tuple(variable.shape)}"
            )
        variable.assign(array.astype(variable.dtype))


# Keras 3 variable names that tf.keras 2 stored under another name
_LEGACY_VARIABLE_NAMES = {("DepthwiseConv2D", "kernel"): "depthwise_kernel"}


def layer_variables(model: keras.Model) -> dict[str, keras.Variable]:
    """Variables of a flat model under their legacy names, ``<layer name>/<variable name>``."""
    return {
        f"{layer.name}/{_LEGACY_VARIABLE_NAMES.get((type(layer).__name__, v.name), v.name)}": v
        for layer in model.layers
        for v in layer.weights
    }
