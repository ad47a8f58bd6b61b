"""The kecam architectures re-implemented in Keras 3 take kecam's own weight files exactly.

kecam 1.3.10 under tf.keras 2 (``.reference-env``, run only in a subprocess by
``tests/reference/kecam_fixtures.py``) writes, with random weights, a reduced-depth ``.h5`` and its
logits on fixed images, and the full-size layout. Our builders must give the same logits under the
TensorFlow backend and under the torch backend (to 1e-4 of the largest logit), and their full-size
weighted layers must be kecam's, in kecam's order (so legacy by-position loading is right too).

Reduced depth, because full-size forward passes in three models and two backends are too slow on
2 CPU cores: ConvNeXt (1, 1, 2, 1) blocks at 64 px, LeViT (1, 2, 1) and MaxViT (1, 2, 1, 1) at the
published 224 px (their attention-bias tables depend on the grid sizes). The full-size networks
are compared by layout: names, shapes, order and parameter count.
"""

from __future__ import annotations

import importlib
import json

import numpy as np
import pytest

from builders import run_python

import keras  # noqa: E402  (after builders, which settles the import order)

RTOL = 1e-4  # of the largest reference logit, elementwise

# name -> (module, builder, the reduced configuration that kecam_fixtures.py builds in kecam)
REDUCED = {
    "convnext_tiny": ("harmonization.models.convnext", "convnext_tiny", {"image_size": 64, "depths": [1, 1, 2, 1]}),
    "levit128": ("harmonization.models.levit", "levit128", {"depths": [1, 2, 1]}),
    "maxvit_tiny": ("harmonization.models.maxvit", "maxvit_tiny", {"depths": [1, 2, 1, 1]}),
}


def build(name: str, reduced: bool = True) -> keras.Model:
    module, builder, config = REDUCED[name]
    return getattr(importlib.import_module(module), builder)(**(config if reduced else {}))


def assert_logits_match(logits: np.ndarray, reference: np.ndarray) -> None:
    assert logits.shape == reference.shape
    np.testing.assert_allclose(logits, reference, rtol=RTOL, atol=RTOL * float(np.abs(reference).max()))


def weighted_layout(model: keras.Model) -> list:
    return [[layer.name, [list(w.shape) for w in layer.weights]] for layer in model.layers if layer.weights]


@pytest.mark.parametrize("name", sorted(REDUCED))
def test_full_size_layout_is_kecams(kecam_files, name):
    """The full-size network has kecam's weighted layers ('/' read as '_'), shapes and order."""
    expected = json.loads((kecam_files / f"{name}_layout.json").read_text())
    model = build(name, reduced=False)
    kecam_layers = [[layer_name.replace("/", "_"), shapes] for layer_name, shapes in expected["layers"]]
    assert weighted_layout(model) == kecam_layers
    assert model.count_params() == expected["params"]


@pytest.mark.parametrize("name", sorted(REDUCED))
def test_logits_match_kecam_under_tensorflow(kecam_files, name):
    images = np.load(kecam_files / f"{name}_images.npy")
    reference = np.load(kecam_files / f"{name}_logits.npy")
    by_position = build(name)
    by_position.load_weights(kecam_files / f"{name}.h5")
    assert_logits_match(keras.ops.convert_to_numpy(by_position(images, training=False)), reference)
    if name != "maxvit_tiny":  # MaxViT's kecam names contain '/', which Keras 3 names cannot
        by_name = build(name)
        by_name.load_weights(kecam_files / f"{name}.h5", by_name=True)
        assert_logits_match(keras.ops.convert_to_numpy(by_name(images, training=False)), reference)


def test_logits_match_kecam_under_torch(kecam_files, tmp_path):
    """One torch-backend process loads every fixture by position and writes its logits."""
    code = """
        import importlib, json, sys
        from pathlib import Path
        import numpy as np
        import keras
        fixtures, out, reduced = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3])
        assert keras.backend.backend() == "torch"
        for name, (module, builder, config) in reduced.items():
            model = getattr(importlib.import_module(module), builder)(**config)
            model.load_weights(fixtures / f"{name}.h5")
            logits = model(np.load(fixtures / f"{name}_images.npy"), training=False)
            np.save(out / f"{name}.npy", keras.ops.convert_to_numpy(logits))
    """
    result = run_python(
        code, env={"KERAS_BACKEND": "torch"}, args=(str(kecam_files), str(tmp_path), json.dumps(REDUCED))
    )
    assert result.returncode == 0, result.stderr[-4000:]
    for name in REDUCED:
        assert_logits_match(np.load(tmp_path / f"{name}.npy"), np.load(kecam_files / f"{name}_logits.npy"))


@pytest.mark.filterwarnings("ignore:You are using a softmax over axis -1")  # 1-token grids at 64 px
@pytest.mark.parametrize("name", sorted(REDUCED))
def test_a_new_network_has_saliency_and_reloads_from_a_keras_file(tmp_path, name):
    """Built with random weights (harmonize train), a network's input gradient is not zero (the
    harmonization loss has a signal from the first step), and it saves and reloads as .keras."""
    import tensorflow as tf

    module, builder, config = REDUCED[name]
    model = getattr(importlib.import_module(module), builder)(
        num_classes=3, image_size=64, depths=[1] * len(config["depths"])
    )
    images = tf.constant(np.random.default_rng(0).normal(0, 1, (2, 64, 64, 3)), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(images)
        top_logit = tf.reduce_sum(model(images, training=False)[:, 0])
    saliency = tape.gradient(top_logit, images).numpy()
    assert np.isfinite(saliency).all()
    assert (np.abs(saliency).max(axis=(1, 2, 3)) > 0).all()  # every image has a saliency map
    model.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(reloaded(images)), keras.ops.convert_to_numpy(model(images))
    )
