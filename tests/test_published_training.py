"""The published architectures are harmonizable: no bilinear resize, every weight gets the second-order term.

Each is built as the zoo builds it, at a small image size and (for the transformers) reduced depth
and width, so that the check runs in seconds on 2 cores; the layer types are the full network's.
"""

from __future__ import annotations

import numpy as np
import pytest

from builders import clickme_arrays
import keras  # noqa: E402  (after builders, which settles the import order)
import tensorflow as tf  # noqa: E402

from harmonization.loss import harmonization_loss  # noqa: E402
from harmonization.models import build_model  # noqa: E402
from harmonization.models.levit import levit128  # noqa: E402
from harmonization.models.maxvit import maxvit_tiny  # noqa: E402
from harmonization.models.pixel import assemble, imagenet_normalize  # noqa: E402
from harmonization.models.vit import vit_network  # noqa: E402
from harmonization.saliency import signed_saliency  # noqa: E402
from harmonization.training import Harmonizer  # noqa: E402

CLASSES = 4


def small_vit() -> keras.Model:
    inputs = keras.Input((32, 32, 3))
    network = keras.Model(inputs, vit_network(inputs, CLASSES, num_layers=1, hidden_size=64, num_heads=2, mlp_dim=128))
    return assemble("vit_b16", imagenet_normalize(), network, 32)


def fixed(*paths: str):
    return lambda gradients: set(paths)


def biases(gradients: dict) -> set:
    return {path for path in gradients if path.endswith("/bias")}


# name -> (pixel model factory, image size, the weights with no harmonization gradient by construction).
# The saliency d logit / d input cannot depend on the head's bias, nor on the shift (beta) of a
# normalisation right before the linear head; in VGG16, a ReLU network without normalisation, the
# saliency is piecewise constant in every bias (biases only move ReLU kinks). Any other missing
# gradient would be a cut second-order path (docs/traps.md).
MODELS = {
    "vit_b16": (small_vit, 32, fixed("head/bias", "Transformer_encoder_norm/beta")),
    "vgg16": (lambda: build_model("vgg16", CLASSES, 32), 32, biases),
    "maxvit_tiny": (
        lambda: assemble("maxvit_tiny", imagenet_normalize(), maxvit_tiny(CLASSES, 64, depths=[1, 1, 1, 1]), 64),
        64,
        fixed("predictions/bias"),
    ),
    "levit128": (
        lambda: assemble("levit128", imagenet_normalize(), levit128(CLASSES, 128, depths=[1, 1, 1]), 128),
        128,
        fixed("head/bias", "head_bn/beta"),
    ),
}


def redraw_constants(model: keras.Model) -> None:
    """Redraw every weight initialised to one constant (norm scales, zero-initialised layer scales).

    LeViT, like kecam's, zero-initialises the output batch norm of its subsampling attentions:
    its logits then do not depend on the image at all, and no weight can get a saliency gradient
    before cross-entropy has moved those scales. The check is about the graph's second-order
    paths, so it runs at a generic point of weight space.
    """
    rng = np.random.default_rng(0)
    for variable in model.trainable_weights:
        value = variable.numpy()
        if np.all(value == value.flat[0]):
            variable.assign(rng.uniform(0.5, 1.5, value.shape).astype(value.dtype))


def harmonization_gradients(model: keras.Model, size: int) -> dict:
    """Gradient of the harmonization term alone (no cross-entropy) for each trainable weight."""
    data = clickme_arrays(2, size, CLASSES, seed=3)
    backbone = model.get_layer("backbone")
    with tf.GradientTape() as tape:
        saliency, _ = signed_saliency(
            backbone, model.get_layer("preprocess")(data["image"]), tf.one_hot(data["label"], CLASSES)
        )
        value = harmonization_loss(saliency, data["heatmap"], data["token"])
    gradients = tape.gradient(value, backbone.trainable_variables)
    return {
        v.path: None if g is None else tf.convert_to_tensor(g)  # gathers give IndexedSlices
        for v, g in zip(backbone.trainable_variables, gradients)
    }


@pytest.mark.parametrize("name", MODELS)
def test_every_weight_gets_the_harmonization_gradient(name):
    factory, size, exempt = MODELS[name]
    model = factory()
    Harmonizer(model, lambda_harmonization=1.0)  # the bilinear-resize guard accepts it
    redraw_constants(model)
    gradients = harmonization_gradients(model, size)
    assert all(np.isfinite(g.numpy()).all() for g in gradients.values() if g is not None)
    missing = {path for path, g in gradients.items() if g is None or not np.any(g.numpy())}
    assert missing == exempt(gradients)


def test_a_trained_vit_saves_and_loads_as_a_keras_file(tmp_path):
    """``harmonize train --model vit_b16`` writes model.keras; evaluation loads it back."""
    from harmonization.models import load_harmonized

    model = small_vit()
    redraw_constants(model)
    model.save(tmp_path / "model.keras")
    pixels = clickme_arrays(2, 32, CLASSES)["image"]
    np.testing.assert_allclose(
        load_harmonized(tmp_path / "model.keras")(pixels).numpy(), model(pixels).numpy(), rtol=1e-5, atol=1e-5
    )
