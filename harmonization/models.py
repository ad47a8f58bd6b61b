"""Keras model zoo: "pixel models" that take RGB pixels in [0, 255] and return logits.

Every model built here is a functional ``keras.Model`` made of two named parts:

- ``preprocess``: the network's own input preprocessing, built only from core Keras layers (so a
  saved model loads with plain ``keras.saving.load_model``, without this project);
- ``backbone``: preprocessed image -> logits (N, C), no softmax.

Saliency, in training and in evaluation, is taken with respect to the output of ``preprocess``.

Choices, each documented where it is made:
- ``small_cnn`` (about 35k parameters; 5 convolutions, the first 4 with batch norm) ends with a
  log-softmax: its outputs are still logits for every loss and attack (softmax and cross-entropy
  are unchanged), but a term added to every class's logit alike cancels, so the logit saliency
  cannot be "gamed" (small-data-effect.md), and it is equal to the log-probability saliency. It
  also gives every weight a gradient from the harmonization term. Its batch norm is the plain
  Keras one (``synchronized=True`` would not load under the torch backend).
- ``small_cnn_plain``: the same network without batch norm (biases instead), for Adam. Its
  training-mode saliency does not depend on the other images of the batch, so the saliency the
  harmonizer shapes in training is the one evaluation and attacks see; the demo uses it (with
  batch norm, the harmonization term fell in training but not on held-out images).
- The ``keras.applications`` networks keep the plain linear logits head of the method; use
  ``Harmonizer(centered_logits=True)`` to close the same loophole for them.
- ``efficientnetb0``: the Keras network rescales and normalises inside itself, so its
  ``preprocess`` is an identity and saliency is taken with respect to the [0, 255] pixels (a
  per-channel rescaling of the preprocessed image; standardized maps are the same up to it).
- ``vgg16``: Caffe preprocessing (mean subtraction, then RGB -> BGR by a fixed 1x1 convolution).
"""
from __future__ import annotations

import os
from collections.abc import Callable

import keras
import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_RGB = (123.68, 116.779, 103.939)
PREPROCESS = "preprocess"
BACKBONE = "backbone"


def _scale_to_unit_range() -> list[keras.layers.Layer]:
    return [keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, dtype="float32")]


def _imagenet_normalize() -> list[keras.layers.Layer]:
    return [keras.layers.Normalization(
        mean=[255.0 * m for m in IMAGENET_MEAN],
        variance=[(255.0 * s) ** 2 for s in IMAGENET_STD], dtype="float32",
    )]


def _caffe() -> list[keras.layers.Layer]:
    flip = keras.layers.Conv2D(3, 1, use_bias=False, trainable=False, name="rgb_to_bgr",
                               dtype="float32")
    flip.build((None, None, None, 3))
    flip.set_weights([np.eye(3, dtype=np.float32)[::-1].reshape(1, 1, 3, 3)])
    return [keras.layers.Normalization(mean=list(CAFFE_MEAN_RGB), variance=[1.0, 1.0, 1.0],
                                       dtype="float32"), flip]


def _identity() -> list[keras.layers.Layer]:
    return [keras.layers.Identity(dtype="float32")]


def _small_cnn(batch_norm: bool) -> Callable:
    def build(inputs: keras.KerasTensor, num_classes: int, weights: str | None) -> keras.KerasTensor:
        if weights is not None:
            raise ValueError("small_cnn has no pretrained base network: pass weights=None or a "
                             ".weights.h5 file of the whole model")
        x = inputs
        for width in (16, 32):
            for _ in range(2):  # batch norm: without it SGD needs many more epochs here
                x = keras.layers.Conv2D(width, 3, padding="same", use_bias=not batch_norm)(x)
                if batch_norm:
                    x = keras.layers.BatchNormalization()(x)
                x = keras.layers.Activation("relu")(x)
            x = keras.layers.MaxPooling2D()(x)
        x = keras.layers.Conv2D(64, 3, padding="same", activation="relu")(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
        x = keras.layers.Dense(num_classes, name="logits")(x)
        return keras.layers.Activation("log_softmax", name="log_probs", dtype="float32")(x)
    return build


def _application(factory: Callable[..., keras.Model], **options) -> Callable:
    def build(inputs: keras.KerasTensor, num_classes: int, weights: str | None) -> keras.KerasTensor:
        base = factory(include_top=False, weights=weights, input_tensor=inputs, pooling="avg",
                       **options)
        return keras.layers.Dense(num_classes, name="logits")(base.output)
    return build


_ZOO: dict[str, tuple[Callable[[], list[keras.layers.Layer]], Callable]] = {
    "small_cnn": (_scale_to_unit_range, _small_cnn(batch_norm=True)),
    "small_cnn_plain": (_scale_to_unit_range, _small_cnn(batch_norm=False)),
    "vgg16": (_caffe, _application(keras.applications.VGG16)),
    "resnet50v2": (_scale_to_unit_range, _application(keras.applications.ResNet50V2)),
    "efficientnetb0": (_identity, _application(keras.applications.EfficientNetB0)),
    "convnext_tiny": (_imagenet_normalize, _application(keras.applications.ConvNeXtTiny,
                                                        include_preprocessing=False)),
}
MODEL_NAMES = tuple(_ZOO)


def build_model(name: str, num_classes: int, image_size: int = 224,
                weights: str | None = None) -> keras.Model:
    """A pixel model ([0, 255] RGB (N, S, S, 3) -> logits (N, C)) with parts "preprocess", "backbone".

    ``weights``: None (random initialisation); a ``.weights.h5`` file of the whole pixel model
    (as written by ``model.save_weights``); or, for the ``keras.applications`` networks, a Keras
    ImageNet "notop" ``.h5`` file of the base network (the logits head stays random).
    """
    if name not in _ZOO:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(MODEL_NAMES)}")
    if int(num_classes) < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    if int(image_size) < 16:
        raise ValueError(f"image_size must be at least 16, got {image_size}")
    if weights is not None and not os.path.isfile(weights):
        raise FileNotFoundError(f"weights file not found: {weights}")
    whole_model_weights = weights is not None and str(weights).endswith(".weights.h5")
    make_preprocess, make_backbone = _ZOO[name]
    shape = (int(image_size), int(image_size), 3)
    preprocess = keras.Sequential([keras.Input(shape), *make_preprocess()], name=PREPROCESS)
    backbone_input = keras.Input(shape, name="preprocessed")
    backbone_output = make_backbone(backbone_input, int(num_classes),
                                    None if whole_model_weights else weights)
    backbone = keras.Model(backbone_input, backbone_output, name=BACKBONE)
    pixels = keras.Input(shape, name="pixels")
    model = keras.Model(pixels, backbone(preprocess(pixels)), name=name)
    if whole_model_weights:
        model.load_weights(weights)
    return model


def split_pixel_model(model: keras.Model) -> tuple[keras.layers.Layer, keras.Model] | None:
    """The ("preprocess", "backbone") parts of a pixel model, or None if it has no such parts."""
    names = {layer.name for layer in model.layers}
    if {PREPROCESS, BACKBONE} <= names:
        return model.get_layer(PREPROCESS), model.get_layer(BACKBONE)
    return None


def load_harmonized(path: str, name: str | None = None, num_classes: int | None = None,
                    image_size: int = 224) -> keras.Model:
    """Load a pixel model from ``.keras``, legacy full-model ``.h5``, or ``.weights.h5``.

    A ``.weights.h5`` file holds no architecture: pass the zoo ``name``, ``num_classes`` and
    ``image_size`` it was built with.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file not found: {path}")
    if path.endswith(".weights.h5"):
        if name is None or num_classes is None:
            raise ValueError(f"{path}: a .weights.h5 file needs name= and num_classes= "
                             f"(known models: {', '.join(MODEL_NAMES)})")
        return build_model(name, num_classes, image_size, weights=path)
    if path.endswith((".keras", ".h5", ".hdf5")):
        return keras.saving.load_model(path, compile=False)
    raise ValueError(f"{path}: expected a .keras, .h5 or .weights.h5 file")
