"""Keras pixel models saved under TensorFlow, attacked under torch: same logits, gradients reach the pixels.

Each framework runs in its own interpreter (the Keras backend is fixed per process).
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SAVE_UNDER_TENSORFLOW = """
import harmonization  # loads triton before TensorFlow
import json, sys
from pathlib import Path
import keras, numpy as np, tensorflow as tf
from harmonization.models import build_model

out = Path(sys.argv[1])
keras.utils.set_random_seed(0)

def batchnorm_pixel_model():
    inputs = keras.Input((32, 32, 3))
    preprocess = keras.Sequential([keras.layers.Rescaling(1 / 255.0), keras.layers.Normalization(
        mean=[0.4, 0.5, 0.6], variance=[0.04, 0.05, 0.06])], name="preprocess")
    features = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu")(features)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    backbone = keras.Model(features, keras.layers.Dense(4)(x), name="backbone")
    model = keras.Model(inputs, backbone(preprocess(inputs)), name="pixel_model")
    bn = backbone.layers[2]
    bn.moving_mean.assign(np.linspace(-0.5, 0.5, 8).astype("float32"))
    bn.moving_variance.assign(np.linspace(0.5, 2.0, 8).astype("float32"))
    return model

models = {"small_cnn.keras": build_model("small_cnn", 4, 32), "bn.keras": batchnorm_pixel_model()}
models["bn.h5"] = models["bn.keras"]
x = np.random.default_rng(0).uniform(0, 1, (3, 3, 32, 32)).astype("float32")  # NCHW in [0, 1]
np.save(out / "x.npy", x)
pixels = tf.constant(x.transpose(0, 2, 3, 1) * 255.0)
for name, model in models.items():
    model.save(out / name)
    with tf.GradientTape() as tape:
        tape.watch(pixels)
        logits = model(pixels, training=False)
        target = tf.reduce_sum(logits[:, 0])
    grad = tape.gradient(target, pixels).numpy().transpose(0, 3, 1, 2) * 255.0  # d/d[0, 1] pixels
    np.save(out / (name + ".logits.npy"), logits.numpy())
    np.save(out / (name + ".grad.npy"), grad)
    if name.startswith("bn"):
        np.save(out / (name + ".train.npy"), model(pixels, training=True).numpy())

import attacks_torch.models  # keras is on TensorFlow in this process: load_keras must refuse, clearly
try:
    attacks_torch.models.load_keras(out / "bn.keras")
except RuntimeError as error:
    (out / "backend_error.txt").write_text(str(error))
"""

LOAD_UNDER_TORCH = """
import json, sys
from pathlib import Path
import numpy as np, torch
from attacks_torch.models import load_keras, load_model

out = Path(sys.argv[1])
x = torch.from_numpy(np.load(out / "x.npy")).requires_grad_(True)
report = {}
for name in ("small_cnn.keras", "bn.keras", "bn.h5"):
    model = load_keras(out / name) if name != "bn.h5" else load_model(str(out / name))
    model.train()
    logits = model(x)
    (grad,) = torch.autograd.grad(logits[:, 0].sum(), x)
    expected = np.load(out / (name + ".logits.npy"))
    expected_grad = np.load(out / (name + ".grad.npy"))
    scale = np.abs(expected).max()
    report[name] = {
        "input_size": list(model.input_size), "name": model.name, "training": model.training,
        "logits_error": float(np.abs(logits.detach().numpy() - expected).max() / scale),
        "grad_error": float(np.abs(grad.numpy() - expected_grad).max() / np.abs(expected_grad).max()),
        "grad_norm": float(grad.norm()),
        "is_torch": isinstance(logits, torch.Tensor),
    }
    if name.startswith("bn"):
        train_mode = np.load(out / (name + ".train.npy"))
        report[name]["train_mode_gap"] = float(np.abs(train_mode - expected).max() / scale)
bad = {}
for name in ("text.h5", "text.keras"):  # not what their names say
    (out / name).write_text("not a model")
    try:
        load_keras(out / name)
    except ValueError as error:
        bad[name] = str(error)
print(json.dumps({"models": report, "bad": bad}))
"""


def _run(code: str, *args: str, backend: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "KERAS_BACKEND": backend, "HF_HUB_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    out = tmp_path_factory.mktemp("keras_models")
    result = _run(SAVE_UNDER_TENSORFLOW, str(out), backend="tensorflow")
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_keras_models_give_tensorflows_logits_and_gradients_under_torch(saved_models):
    result = _run(LOAD_UNDER_TORCH, str(saved_models), backend="torch")
    assert result.returncode == 0, result.stderr[-3000:]
    output = json.loads(result.stdout.strip().splitlines()[-1])
    report = output["models"]
    for name, entry in report.items():
        assert entry["is_torch"] and not entry["training"], name
        assert entry["input_size"] == [32, 32], name
        assert entry["logits_error"] < 1e-5, (name, entry)
        assert entry["grad_norm"] > 0 and entry["grad_error"] < 1e-4, (name, entry)
    assert report["bn.keras"]["name"] == "bn"
    assert report["bn.keras"]["train_mode_gap"] > 1e-2  # so matching the logits proves training=False
    faults = {"text.h5": "not a readable HDF5 file", "text.keras": "not a zip file"}
    assert set(output["bad"]) == set(faults)
    for name, message in output["bad"].items():  # one line naming the file (not "File not found")
        assert name in message and faults[name] in message and "\n" not in message, message


def test_keras_already_on_another_backend_is_a_clear_error(saved_models):
    message = (saved_models / "backend_error.txt").read_text()  # written by the TensorFlow process
    assert "torch backend" in message and "'tensorflow'" in message


def test_files_that_are_not_keras_models_are_named(tmp_path):
    from attacks_torch.models import load_keras

    with pytest.raises(ValueError, match="model.pt"):
        load_keras(tmp_path / "model.pt")
    with pytest.raises(FileNotFoundError, match="absent.h5"):
        load_keras(tmp_path / "absent.h5")
