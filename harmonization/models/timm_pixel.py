"""A timm network as a Keras pixel model, on the torch backend (docs/backends.md, "timm models").

``build_timm`` gives the usual two parts (``harmonization.models.pixel``):

- "preprocess": the network's own mean/std normalisation from its timm data config, a Keras
  ``Normalization`` on [0, 255] pixels, so saliency is taken with respect to the normalised
  image on the pixel grid, as for every zoo model;
- "backbone": a ``TimmLayer`` (``keras.layers.TorchModuleWrapper``) that permutes the NHWC images
  to NCHW, resizes them to the data config's input size by its interpolation when they have
  another size (``harmonization.timm_models.resize``, differentiable twice on torch), and runs the
  timm network.

This is the input pipeline ``attacks_torch``'s ``PixelModel`` runs on [0, 1] pixels (it resizes
before normalising, which is the same up to float rounding). The trained network is saved as its
timm state dict in a ``.safetensors`` file (``save_timm``), never as a pickled module.
"""

from __future__ import annotations

import keras
import timm
import torch
from torch import nn

from harmonization.files import temporary_path
from harmonization.models.pixel import BACKBONE, assemble, normalize
from harmonization.timm_models import (
    INTERPOLATIONS,
    check_name,
    data_config,
    load_timm_weights,
    resize,
)

NORM_PREFIX = "norm_"
"""Prefix of the Keras names of normalisation-layer parameters: ``harmonization.loss`` then gives
them no weight decay, as it does the Keras zoo's batch norm."""


def variable_name(parameter: str, norm: bool) -> str:
    """The Keras name of the torch parameter ``parameter`` ("." -> "_": Keras's torch layers
    register variables as torch parameters, whose names cannot hold a ".")."""
    return (NORM_PREFIX if norm else "") + parameter.replace(".", "_")


def keras_named_parameters(network: nn.Module):
    """(Keras name, parameter) of every parameter of ``network``, in ``named_parameters`` order
    (those of normalisation modules prefixed ``NORM_PREFIX``)."""
    for prefix, module in network.named_modules():
        norm = "Norm" in type(module).__name__
        for name, param in module.named_parameters(prefix=prefix, recurse=False):
            yield variable_name(name, norm), param


class TimmInput(nn.Module):
    """Normalised NHWC images -> logits of ``network``, on its input grid."""

    def __init__(self, network: nn.Module, input_size: tuple[int, int], interpolation: str):
        super().__init__()
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
        self.network = network
        self.input_size = tuple(input_size)
        self.interpolation = interpolation

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network(resize(images.permute(0, 3, 1, 2), self.input_size, self.interpolation))


class TimmLayer(keras.layers.TorchModuleWrapper):
    """``TorchModuleWrapper`` of a ``TimmInput`` whose Keras variables carry the torch parameter
    names (``variable_name``), and which follows Keras's training convention: ``training`` None
    is inference, as for Keras's own batch norm (the plain wrapper trains then)."""

    def _track_module_parameters(self) -> None:
        for name, param in keras_named_parameters(self.module.network):
            self._track_variable(keras.Variable(param, trainable=param.requires_grad, name=name))
        self.built = True

    def call(self, inputs, training=None):
        self.module.train(bool(training))
        return self.module(inputs)


def build_timm(name: str, num_classes: int, image_size: int, weights: str | None = None) -> keras.Model:
    """The pixel model of timm's ``name`` with a ``num_classes`` head for ``image_size`` pixels.

    Randomly initialised (from torch's generator; nothing is downloaded), or from ``weights``: a
    local timm checkpoint (``.safetensors``, or a torch weights file read with ``weights_only``),
    whose classifier head is dropped when it has another number of classes. timm's fused attention
    is turned off (``F.scaled_dot_product_attention`` has no double backward on CPU): attention
    then runs as plain matrix products, the same function.
    """
    if keras.backend.backend() != "torch":
        raise ValueError(
            f"timm model {name!r}: timm models run on the torch backend only, not on {keras.backend.backend()!r}"
        )
    check_name(name)
    network = timm.create_model(name, pretrained=False, num_classes=int(num_classes))
    for module in network.modules():  # torch's fused attention kernels have no second derivative
        if hasattr(module, "fused_attn"):
            module.fused_attn = False
    if weights is not None:
        load_timm_weights(network, name, weights, new_head=True)
    config = data_config(network)
    layer = TimmLayer(
        TimmInput(network, config["input_size"], config["interpolation"]),
        name="timm",
        output_shape=(None, int(num_classes)),
    )
    inputs = keras.Input((int(image_size), int(image_size), 3), name="preprocessed")
    backbone = keras.Model(inputs, layer(inputs), name=BACKBONE)
    return assemble(name, normalize(config["mean"], config["std"]), backbone, image_size)


def timm_network(pixel_model: keras.Model) -> nn.Module:
    """The timm network inside a pixel model from ``build_timm``."""
    layers = [layer for layer in pixel_model.get_layer(BACKBONE).layers if isinstance(layer, TimmLayer)]
    if len(layers) != 1:
        raise ValueError(f"model {pixel_model.name!r} is not a timm pixel model")
    return layers[0].module.network


def save_timm(pixel_model: keras.Model, path: str) -> str:
    """Write the timm network's state dict to ``path`` (``.safetensors``), atomically, with its timm
    name and pixel size in the metadata; returns the path. ``attacks_torch`` loads it as a
    checkpoint of the timm name (``NAME@PATH``), ``harmonize evaluate`` by itself
    (``harmonization.models.timm_file``)."""
    from safetensors.torch import save_file

    if not str(path).endswith(".safetensors"):
        raise ValueError(f"{path}: a timm network is saved as a .safetensors file")
    network = timm_network(pixel_model)
    tensors = {key: value.detach().cpu().contiguous() for key, value in network.state_dict().items()}
    with temporary_path(path, suffix=".safetensors") as partial:
        save_file(
            tensors,
            str(partial),
            metadata={"format": "pt", "timm_model": pixel_model.name, "image_size": str(pixel_model.input_shape[1])},
        )
    return str(path)
