"""Write published-format kecam fixtures: run with the reference stack, never in the test process.

    PYTHONPATH=.reference-env TF_USE_LEGACY_KERAS=1 python tests/reference/kecam_fixtures.py \
        OUT [--full-size] [NAME ...]

For each of ConvNeXt-Tiny, LeViT-128 (no distillation head) and MaxViT-Tiny, built by kecam 1.3.10
under tf.keras 2 (reduced depth, via kecam's own base constructors with the published widths):
every weight that the constructor initialises to a constant (norm scales and offsets, batch-norm
statistics, layer scales, attention biases) is redrawn at random, so that no part of the network
is an identity; then it writes

- ``NAME.h5``: ``save_weights`` (the published files' format; ``--full-size``: the published
  constructor itself at 224 px, for a one-off full check),
- ``NAME_images.npy`` and ``NAME_logits.npy``: fixed normalised images and the model's logits,
- ``NAME_layout.json``: the FULL-size constructor's weighted layers in order (name and weight
  shapes) and its parameter count, so the full published layout is checked without its weights.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import tensorflow as tf
from harmonization.files import temporary_path, write_json, write_npy
from keras_cv_attention_models import convnext, levit, maxvit

SEED = 0


def reduced(name: str):
    """(model, image size) of the reduced-depth constructor used for the numerical comparison."""
    if name == "convnext_tiny":
        return convnext.ConvNeXt(
            num_blocks=[1, 1, 2, 1],
            out_channels=[96, 192, 384, 768],
            input_shape=(64, 64, 3),
            classifier_activation=None,
            pretrained=None,
            model_name=name,
        ), 64
    if name == "levit128":
        return levit.LeViT(
            num_heads=[4, 8, 12],
            depthes=[1, 2, 1],
            input_shape=(224, 224, 3),
            classifier_activation=None,
            use_distillation=False,
            pretrained=None,
            model_name=name,
        ), 224
    if name == "maxvit_tiny":
        return maxvit.MaxViT(
            num_blocks=[1, 2, 1, 1],
            out_channels=[64, 128, 256, 512],
            stem_width=64,
            input_shape=(224, 224, 3),
            classifier_activation=None,
            pretrained=None,
            model_name=name,
        ), 224
    raise ValueError(f"unknown model {name!r}")


def full(name: str):
    """The published constructor call, as the reference library makes it."""
    if name == "convnext_tiny":
        return convnext.ConvNeXtTiny(classifier_activation=None, pretrained=None)
    if name == "levit128":
        return levit.LeViT128(classifier_activation=None, use_distillation=False, pretrained=None)
    return maxvit.MaxViT_Tiny(classifier_activation=None, pretrained=None)


def randomize_constants(model, rng: np.random.Generator) -> None:
    """Redraw every weight whose initial values are all equal (kernels keep their random init)."""
    for variable in model.weights:
        value = variable.numpy()
        if value.size > 1 and not np.all(value == value.flat[0]):
            continue
        if "moving_variance" in variable.name:
            new = rng.uniform(0.5, 2.0, value.shape)
        elif "gamma" in variable.name or variable.name.endswith("weight:0"):
            new = rng.uniform(0.5, 1.5, value.shape)
        else:  # offsets, biases, moving means, positional embeddings
            new = rng.normal(0.0, 0.1, value.shape)
        variable.assign(new.astype(value.dtype))


def layout(model) -> dict:
    layers = [[layer.name, [list(w.shape) for w in layer.weights]] for layer in model.layers if layer.weights]
    return {"layers": layers, "params": int(model.count_params())}


def write(name: str, out: str, full_size: bool = False) -> None:
    tf.keras.utils.set_random_seed(SEED)
    model, size = (full(name), 224) if full_size else reduced(name)
    randomize_constants(model, np.random.default_rng(SEED))
    images = np.random.default_rng(SEED + 1).normal(0, 1, (2, size, size, 3)).astype(np.float32)
    with temporary_path(os.path.join(out, f"{name}.h5"), suffix=".h5") as tmp:
        model.save_weights(str(tmp))
    write_npy(os.path.join(out, f"{name}_images.npy"), images)
    write_npy(os.path.join(out, f"{name}_logits.npy"), model(images, training=False).numpy())
    write_json(os.path.join(out, f"{name}_layout.json"), layout(model if full_size else full(name)))


if __name__ == "__main__":
    arguments = [a for a in sys.argv[1:] if a != "--full-size"]
    for model_name in arguments[1:] or ["convnext_tiny", "levit128", "maxvit_tiny"]:
        write(model_name, arguments[0], full_size="--full-size" in sys.argv)
