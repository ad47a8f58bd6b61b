"""Pixel models: RGB pixels in [0, 255] (N, H, W, 3) -> logits (N, C), in two named parts.

- ``preprocess``: the network's own input preprocessing, built only from core Keras layers (so a
  saved model loads with plain ``keras.saving.load_model``, without this project);
- ``backbone``: preprocessed image -> logits (N, C), no softmax.

Saliency, in training and in evaluation, is taken with respect to the output of ``preprocess``.
"""

from __future__ import annotations

import keras
import numpy as np

from harmonization.model_names import BACKBONE, IMAGENET_MEAN, IMAGENET_STD, PREPROCESS

CAFFE_MEAN_RGB = (123.68, 116.779, 103.939)


def scale_to_unit_range() -> list[keras.layers.Layer]:
    """[0, 255] -> [-1, 1]."""
    return [keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, dtype="float32")]


def normalize(mean: tuple[float, ...], std: tuple[float, ...]) -> list[keras.layers.Layer]:
    """x / 255, minus ``mean``, divided by ``std`` (RGB, for pixels in [0, 1])."""
    return [
        keras.layers.Normalization(
            mean=[255.0 * m for m in mean],
            variance=[(255.0 * s) ** 2 for s in std],
            dtype="float32",
        )
    ]


def imagenet_normalize() -> list[keras.layers.Layer]:
    """x / 255, minus the ImageNet mean, divided by the ImageNet std (RGB): torchvision's convention."""
    return normalize(IMAGENET_MEAN, IMAGENET_STD)


def caffe() -> list[keras.layers.Layer]:
    """Caffe preprocessing: minus the ImageNet mean in [0, 255], then RGB -> BGR (a fixed 1x1 convolution)."""
    flip = keras.layers.Conv2D(3, 1, use_bias=False, trainable=False, name="rgb_to_bgr", dtype="float32")
    flip.build((None, None, None, 3))
    flip.set_weights([np.eye(3, dtype=np.float32)[::-1].reshape(1, 1, 3, 3)])
    return [keras.layers.Normalization(mean=list(CAFFE_MEAN_RGB), variance=[1.0, 1.0, 1.0], dtype="float32"), flip]


def identity() -> list[keras.layers.Layer]:
    """No preprocessing (the network normalises inside itself)."""
    return [keras.layers.Identity(dtype="float32")]


def assemble(
    name: str, preprocess_layers: list[keras.layers.Layer], backbone: keras.Model, image_size: int
) -> keras.Model:
    """The pixel model ``backbone(preprocess(pixels))`` for square ``image_size`` RGB input."""
    shape = (int(image_size), int(image_size), 3)
    preprocess = keras.Sequential([keras.Input(shape), *preprocess_layers], name=PREPROCESS)
    if backbone.name != BACKBONE:
        backbone = keras.Model(backbone.input, backbone.output, name=BACKBONE)
    pixels = keras.Input(shape, name="pixels")
    return keras.Model(pixels, backbone(preprocess(pixels)), name=name)


def split_pixel_model(model: keras.Model) -> tuple[keras.layers.Layer, keras.Model] | None:
    """The ("preprocess", "backbone") parts of a pixel model, or None if it has no such parts."""
    names = {layer.name for layer in model.layers}
    if {PREPROCESS, BACKBONE} <= names:
        return model.get_layer(PREPROCESS), model.get_layer(BACKBONE)
    return None
