"""Harmonized Keras models, run by Keras 3 on its torch backend so attacks see torch tensors.

Two kinds of file: this project's pixel models (``.keras`` / ``.h5`` with ``preprocess`` and
``backbone`` parts, fed [0, 255] pixels) through :func:`load_keras`, and the reference's published
harmonized files (fed ImageNet-normalised images) through :func:`load_published`. A file of the
second kind given to the first is refused, never fed x * 255.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn

from attacks_torch.models.pixel import PixelModel
from harmonization.model_names import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PIXEL_MODEL_PARTS,
    PUBLISHED_PREFIX,
)

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

    def saliency_parts(self) -> tuple[Callable, Callable] | None:
        """For a pixel model (``preprocess`` and ``backbone`` parts): (NCHW pixels -> the
        preprocessed image, NCHW; that image -> logits), the point where ``harmonize evaluate``
        takes its saliency. None for a network without such parts (its input is that point)."""
        names = {layer.name for layer in getattr(self.keras_model, "layers", [])}
        if not set(PIXEL_MODEL_PARTS) <= names:
            return None
        preprocess, backbone = (self.keras_model.get_layer(name) for name in PIXEL_MODEL_PARTS)

        def to_input(x: torch.Tensor) -> torch.Tensor:
            return preprocess(x.permute(0, 2, 3, 1).to(self.keras_device), training=False).permute(0, 3, 1, 2)

        def head(z: torch.Tensor) -> torch.Tensor:
            return backbone(z.permute(0, 2, 3, 1), training=False).to(z.device)

        return to_input, head


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


def _legacy_layer_names(path: Path) -> set[str]:
    """Top-level layer names in a legacy ``.h5`` file's config (empty for a weights-only file)."""
    from harmonization.models.legacy_full import layer_names_of
    from harmonization.models.legacy_h5 import read_legacy_h5

    stored = read_legacy_h5(path)
    return layer_names_of(stored) if stored.config is not None else set()


def _refuse_foreign_model(path: Path, names: set[str]) -> None:
    """A Keras model without this project's pixel-model parts would be mis-fed: say what to do."""
    if set(PIXEL_MODEL_PARTS) <= names:
        return
    from harmonization.models.published import PUBLISHED_NAMES

    raise ValueError(
        f"Keras model file {str(path)!r} is not a pixel model of this project (no 'preprocess' and "
        "'backbone' parts), so its input scale is unknown; for a published harmonized file use "
        f"{PUBLISHED_PREFIX}NAME:{path} with NAME one of {', '.join(PUBLISHED_NAMES)}"
    )


def load_keras(path: str | Path) -> PixelModel:
    """Load a Keras pixel model (``.keras`` or legacy full-model ``.h5``) as a :class:`PixelModel`.

    The Keras model takes NHWC pixels in [0, 255] and returns logits; the wrapper maps [0, 1]
    NCHW pixels onto it (std = 1/255, i.e. a multiplication by 255, then NCHW -> NHWC) and calls it
    with ``training=False``. Synchronized batch normalisation (TensorFlow-only) loads as plain.
    The weights stay on the device Keras chose; inputs on any device work. A Keras model without
    the ``preprocess`` / ``backbone`` parts (such as a published harmonized file) is refused.
    """
    path = Path(path)
    if path.suffix not in KERAS_SUFFIXES:
        raise ValueError(f"Keras model file {str(path)!r}: expected a {' or '.join(KERAS_SUFFIXES)} file")
    if not path.is_file():
        raise FileNotFoundError(f"Keras model file {str(path)!r} does not exist")
    keras = _import_keras_on_torch()
    from harmonization.models.saved import load_saved_model  # also registers the project's layers

    if path.suffix == ".h5":  # recognised before loading: a published file may not even deserialize
        _refuse_foreign_model(path, _legacy_layer_names(path))
    with _plain_batch_normalization(keras):
        model = load_saved_model(path)
    _refuse_foreign_model(path, {layer.name for layer in model.layers})
    height, width = _image_size(path, model)
    return PixelModel(
        _ChannelsLast(model),
        name=path.stem,
        input_size=None if height is None or width is None else (height, width),
        mean=(0.0, 0.0, 0.0),
        std=(1.0 / 255.0,) * 3,
        num_classes=int(model.output_shape[-1]),
    )


def _image_size(path: Path, model) -> tuple[int | None, int | None]:
    shape = tuple(model.inputs[0].shape) if getattr(model, "inputs", None) else ()
    if len(shape) != 4 or shape[-1] != 3:
        raise ValueError(f"Keras model {str(path)!r}: expected an (N, H, W, 3) image input, got {shape}")
    return shape[1], shape[2]


def load_published(name: str, path: str | Path) -> PixelModel:
    """A published harmonized Keras file (``harmonization.models.load_published``) as a :class:`PixelModel`.

    Attacked in [0, 1] pixel units like every timm model: the wrapper resizes to the file's input
    size (224) when needed, applies the published ImageNet mean / std, and calls the Keras network
    (``backbone``, logits out) on Keras's torch backend with ``training=False``. Any file name
    works (the reference caches its downloads without an extension).
    """
    _import_keras_on_torch()
    from harmonization.models import load_published as load_keras_published
    from harmonization.models import split_pixel_model

    model = load_keras_published(name, path)
    _, backbone = split_pixel_model(model)
    height, width = _image_size(Path(path), model)
    return PixelModel(
        _ChannelsLast(backbone),
        name=f"{name}_harmonized",
        input_size=(height, width),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        num_classes=int(model.output_shape[-1]),
    )
