"""The training zoo: ``build_model(name, num_classes, image_size)`` gives a pixel model.

Choices, each documented where it is made:
- ``small_cnn`` (about 35k parameters; 5 convolutions, the first 4 with batch norm) ends with a
  log-softmax: its outputs are still logits for every loss and attack (softmax and cross-entropy
  are unchanged), but a term added to every class's logit alike cancels, so the logit saliency
  cannot be "gamed" (docs/method.md), and it is equal to the log-probability saliency. It
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
- ``vgg16``: the published architecture (with its fc1 and fc2 layers) under Caffe preprocessing
  (mean subtraction, then RGB -> BGR by a fixed 1x1 convolution), which Keras's ImageNet
  convolution weights expect.
- ``vit_b16``, ``maxvit_tiny``, ``levit128``: the published architectures, re-implemented here
  (:mod:`.vit`, :mod:`.maxvit`, :mod:`.levit`), with the published preprocessing (x / 255, ImageNet
  mean / std); ``resnet50v2``, ``efficientnetb0`` and ``convnext_tiny`` are the ``keras.applications``
  networks of the published architectures (docs/published-zoo.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import keras

from harmonization.models.kecam import KECAM
from harmonization.models.legacy_h5 import check_h5_file
from harmonization.models.pixel import (
    BACKBONE,
    assemble,
    caffe,
    identity,
    imagenet_normalize,
    scale_to_unit_range,
)
from harmonization.models.vit import vit_network
from harmonization.timm_models import timm_name


def _small_cnn(batch_norm: bool) -> Callable:
    def build(inputs: keras.KerasTensor, num_classes: int, weights: str | None) -> keras.KerasTensor:
        if weights is not None:
            raise ValueError(
                "small_cnn has no pretrained base network: pass weights=None or a .weights.h5 file of the whole model"
            )
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
        base = factory(include_top=False, weights=weights, input_tensor=inputs, pooling="avg", **options)
        return keras.layers.Dense(num_classes, name="logits")(base.output)

    return build


def _vgg16_with_top(inputs: keras.KerasTensor, num_classes: int, weights: str | None) -> keras.KerasTensor:
    """VGG16 with its two 4096-wide fully connected layers, as the published file (include_top)."""
    base = keras.applications.VGG16(include_top=False, weights=weights, input_tensor=inputs)
    x = keras.layers.Flatten(name="flatten")(base.output)
    x = keras.layers.Dense(4096, activation="relu", name="fc1")(x)
    x = keras.layers.Dense(4096, activation="relu", name="fc2")(x)
    return keras.layers.Dense(num_classes, name="logits")(x)


def _reimplemented(name: str, network: Callable[[keras.KerasTensor, int], keras.KerasTensor]) -> Callable:
    """A published architecture re-implemented here: random initialisation only."""

    def build(inputs: keras.KerasTensor, num_classes: int, weights: str | None) -> keras.KerasTensor:
        if weights is not None:
            raise ValueError(
                f"{name} has no Keras ImageNet base weights: pass weights=None or a .weights.h5 file of the whole model"
            )
        return network(inputs, num_classes)

    return build


def _kecam_network(name: str) -> Callable[[keras.KerasTensor, int], keras.KerasTensor]:
    def network(inputs: keras.KerasTensor, num_classes: int) -> keras.KerasTensor:
        factory = KECAM[name].build()
        return factory(num_classes=num_classes, image_size=int(inputs.shape[1]))(inputs)

    return network


_ZOO: dict[str, tuple[Callable[[], list[keras.layers.Layer]], Callable]] = {
    "small_cnn": (scale_to_unit_range, _small_cnn(batch_norm=True)),
    "small_cnn_plain": (scale_to_unit_range, _small_cnn(batch_norm=False)),
    "vgg16": (caffe, _vgg16_with_top),
    "resnet50v2": (scale_to_unit_range, _application(keras.applications.ResNet50V2)),
    "efficientnetb0": (identity, _application(keras.applications.EfficientNetB0)),
    "convnext_tiny": (imagenet_normalize, _application(keras.applications.ConvNeXtTiny, include_preprocessing=False)),
    "vit_b16": (imagenet_normalize, _reimplemented("vit_b16", vit_network)),
    "maxvit_tiny": (imagenet_normalize, _reimplemented("maxvit_tiny", _kecam_network("maxvit_tiny"))),
    "levit128": (imagenet_normalize, _reimplemented("levit128", _kecam_network("levit128"))),
}
MODEL_NAMES = tuple(_ZOO)


def build_model(name: str, num_classes: int, image_size: int = 224, weights: str | None = None) -> keras.Model:
    """A pixel model ([0, 255] RGB (N, S, S, 3) -> logits (N, C)) with parts "preprocess", "backbone".

    ``weights``: None (random initialisation); a ``.weights.h5`` file of the whole pixel model
    (as written by ``model.save_weights``); or, for the ``keras.applications`` networks, a Keras
    ImageNet "notop" ``.h5`` file of the base network (the logits head stays random).
    ``timm:NAME`` builds timm's network NAME (torch backend; ``weights``: a local timm checkpoint).
    """
    timm_model = timm_name(name)
    if name not in _ZOO and timm_model is None:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(MODEL_NAMES)}")
    if int(num_classes) < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    if int(image_size) < 16:
        raise ValueError(f"image_size must be at least 16, got {image_size}")
    if weights is not None and not os.path.isfile(weights):
        raise FileNotFoundError(f"weights file not found: {weights}")
    if timm_model is not None:
        from harmonization.models.timm_pixel import build_timm

        return build_timm(timm_model, int(num_classes), int(image_size), weights)
    if weights is not None:
        check_h5_file(weights)  # Keras's readers would follow links out of the file
    whole_model_weights = weights is not None and str(weights).endswith(".weights.h5")
    make_preprocess, make_backbone = _ZOO[name]
    backbone_input = keras.Input((int(image_size), int(image_size), 3), name="preprocessed")
    backbone_output = make_backbone(backbone_input, int(num_classes), None if whole_model_weights else weights)
    backbone = keras.Model(backbone_input, backbone_output, name=BACKBONE)
    model = assemble(name, make_preprocess(), backbone, image_size)
    if whole_model_weights:
        model.load_weights(weights)
    return model
