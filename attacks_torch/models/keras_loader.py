"""Harmonized Keras pixel models, run by Keras 3 on its torch backend so attacks see torch tensors."""
from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from attacks_torch.models.pixel import PixelModel

KERAS_SUFFIXES = (".keras", ".h5")


class _ChannelsLast(nn.Module):
    """Calls a Keras model (torch backend) on NCHW input, NHWC inside, in inference mode.

    Keras keeps its weights on the device it chose (a GPU when there is one): the input goes
    there and the logits come back to the input's device, differentiably.
    """

    def __init__(self, keras_model: nn.Module) -> None:
        super().__init__()
        self.keras_model = keras_model
        weights = keras_model.weights
        self.keras_device = weights[0].value.device if weights else torch.device("cpu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.keras_model(x.permute(0, 2, 3, 1).to(self.keras_device), training=False)
        return logits.to(x.device)


def _import_keras_on_torch():
    keras = sys.modules.get("keras")
    if keras is None:
        os.environ["KERAS_BACKEND"] = "torch"
        import keras
    backend = keras.backend.backend()
    if backend != "torch":
        raise RuntimeError(
            f"load_keras needs Keras on the torch backend, but keras was already imported in this "
            f"process with the {backend!r} backend; set KERAS_BACKEND=torch before anything imports "
            "keras, or load the model in a separate process"
        )
    return keras


@contextlib.contextmanager
def _plain_batch_normalization(keras) -> Iterator[None]:
    """Deserialize ``BatchNormalization(synchronized=True)`` as a plain one while loading.

    Synchronized (cross-replica) batch statistics are a TensorFlow-only training option that
    Keras refuses on other backends; inference uses the moving statistics, so nothing changes.
    """
    layer = keras.layers.BatchNormalization
    own = layer.__dict__.get("from_config")
    original = layer.from_config.__func__

    def from_config(cls, config):
        return original(cls, {**config, "synchronized": False})

    layer.from_config = classmethod(from_config)
    try:
        yield
    finally:
        if own is None:
            del layer.from_config
        else:
            layer.from_config = own


def load_keras(path: str | Path) -> PixelModel:
    """Load a Keras pixel model (``.keras`` or legacy full-model ``.h5``) as a :class:`PixelModel`.

    The Keras model takes NHWC pixels in [0, 255] and returns logits; the wrapper maps [0, 1]
    NCHW pixels onto it (std = 1/255, i.e. a multiplication by 255, then NCHW -> NHWC) and calls it
    with ``training=False``. Synchronized batch normalisation (TensorFlow-only) loads as plain. The weights stay on the device Keras chose; inputs on any device work.
    """
    path = Path(path)
    if path.suffix not in KERAS_SUFFIXES:
        raise ValueError(f"Keras model file {str(path)!r}: expected a {' or '.join(KERAS_SUFFIXES)} file")
    if not path.is_file():
        raise FileNotFoundError(f"Keras model file {str(path)!r} does not exist")
    keras = _import_keras_on_torch()
    try:
        with _plain_batch_normalization(keras):
            model = keras.saving.load_model(str(path), compile=False)
    except Exception as error:  # Keras raises many types for a bad file; name the file in every case
        raise ValueError(f"Keras model file {str(path)!r} could not be loaded: {error}") from error
    shape = tuple(model.inputs[0].shape) if getattr(model, "inputs", None) else ()
    if len(shape) != 4 or shape[-1] != 3:
        raise ValueError(f"Keras model {str(path)!r}: expected an (N, H, W, 3) image input, got {shape}")
    height, width = shape[1:3]
    return PixelModel(
        _ChannelsLast(model),
        name=path.stem,
        input_size=None if height is None or width is None else (height, width),
        mean=(0.0, 0.0, 0.0),
        std=(1.0 / 255.0,) * 3,
    )
