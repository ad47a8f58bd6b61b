"""The published harmonized files load as pixel models and give the reference model's logits.

The reference constructors themselves (vit-keras 0.1.2, tf.keras 2 applications, the
``efficientnet`` package; ``.reference-env``) write files in each published format with random
weights, in a subprocess with the legacy stack (tests/reference/write_published.py): small
stand-ins of the same constructors (32 px; ViT-B/16 with 2 of its 12 blocks). The project loads
them under the TensorFlow backend here and under the torch backend in a subprocess; logits must
match the reference's to 1e-4 of the largest logit, with the published preprocessing (x / 255,
ImageNet mean / std) applied once.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from builders import PUBLISHED_FIXTURES, run_python

from harmonization.models import ModelFileError, load_published, split_pixel_model  # noqa: E402

RTOL = 1e-4  # of the largest reference logit
FILES = PUBLISHED_FIXTURES  # fixture file -> the published name it is loaded as
# The published models' preprocessing, written out here rather than taken from the project, so
# that a wrong constant in the project fails: ImageNet's RGB mean and standard deviation in [0, 1]
# units, those of tf.keras applications' "torch" mode (which the reference's ViT, LeViT and MaxViT
# use) and of torchvision.
PUBLISHED_MEAN = (0.485, 0.456, 0.406)
PUBLISHED_STD = (0.229, 0.224, 0.225)


@pytest.mark.parametrize("name, image_size", [("convnext_tiny", 64), ("levit128", 224), ("maxvit_tiny", 224)])
def test_kecam_files_load_through_the_registry(kecam_files, tmp_path, name, image_size):
    """load_published reads the depths and classes off the file; any file name works."""
    cached = tmp_path / f"{name}_harmonized"
    shutil.copy(kecam_files / f"{name}.h5", cached)
    model = load_published(name, cached, image_size=image_size)
    _, backbone = split_pixel_model(model)
    images = np.load(kecam_files / f"{name}_images.npy")  # already normalised: the backbone's input
    assert relative_error(backbone(images).numpy(), np.load(kecam_files / f"{name}_logits.npy")) < RTOL
    with pytest.raises(ModelFileError, match=f"another.h5: not a kecam {name} weights file"):
        load_published(name, published_files_of_another_kind(tmp_path))


def published_files_of_another_kind(tmp_path: Path) -> Path:
    """A Keras 3 legacy full-model file: not a kecam weights file."""
    import keras

    path = tmp_path / "another.h5"
    inputs = keras.Input((8, 8, 3))
    keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(inputs))).save(path)
    return path


def relative_error(logits: np.ndarray, reference: np.ndarray) -> float:
    assert logits.shape == reference.shape
    return float(np.abs(logits - reference).max() / np.abs(reference).max())


@pytest.mark.parametrize("fixture", FILES)
def test_logits_match_the_reference_under_tensorflow(published_files, fixture):
    model = load_published(FILES[fixture], published_files / f"{fixture}.h5")
    pixels = np.load(published_files / f"{fixture}.pixels.npy")
    logits = model(pixels).numpy()
    assert relative_error(logits, np.load(published_files / f"{fixture}.logits.npy")) < RTOL
    preprocess, backbone = split_pixel_model(model)
    expected = (pixels / 255.0 - np.array(PUBLISHED_MEAN)) / np.array(PUBLISHED_STD)
    np.testing.assert_allclose(preprocess(pixels).numpy(), expected, rtol=1e-5, atol=1e-5)
    assert not preprocess.trainable_weights
    assert model.input_shape == (None, 32, 32, 3)


def test_extension_less_cached_names_load(published_files, tmp_path):
    """The reference caches its downloads without ``.h5``; Keras alone would refuse that name."""
    for fixture in ("vit_b16", "efficientnetb0"):  # a weights-only and a full-model file
        cached = tmp_path / f"{fixture}_harmonized"
        shutil.copy(published_files / f"{fixture}.h5", cached)
        logits = load_published(fixture, cached)(np.load(published_files / f"{fixture}.pixels.npy"))
        assert relative_error(logits.numpy(), np.load(published_files / f"{fixture}.logits.npy")) < RTOL


def test_swapped_attention_kernels_are_caught_numerically(published_files, tmp_path):
    """Equal-shaped query and key kernels loaded the wrong way round would pass any shape check."""
    import h5py

    swapped = tmp_path / "vit_swapped.h5"
    shutil.copy(published_files / "vit_b16.h5", swapped)
    with h5py.File(swapped, "r+") as handle:
        group = handle["Transformer/encoderblock_0/Transformer/encoderblock_0/MultiHeadDotProductAttention_1"]
        query, key = group["query/kernel:0"][()], group["key/kernel:0"][()]
        group["query/kernel:0"][...], group["key/kernel:0"][...] = key, query
    pixels = np.load(published_files / "vit_b16.pixels.npy")
    reference = np.load(published_files / "vit_b16.logits.npy")
    assert relative_error(load_published("vit_b16", swapped)(pixels).numpy(), reference) > 1e-3


def reorder_stored_weights(source: Path, target: Path) -> None:
    """Copy ``source`` with every layer's stored weights listed in reverse order, and the layers
    rotated by one (same names and arrays, other positions): a loader that assigns by position
    gives other logits or fails on a shape."""
    import h5py

    shutil.copy(source, target)
    with h5py.File(target, "r+") as handle:
        group = handle["model_weights"] if "model_weights" in handle else handle

        def as_bytes(names: list) -> np.ndarray:
            return np.array([n if isinstance(n, bytes) else str(n).encode() for n in names], dtype="S")

        layers = list(group.attrs["layer_names"])
        group.attrs["layer_names"] = as_bytes(layers[1:] + layers[:1])
        for layer in layers:
            names = list(group[layer].attrs.get("weight_names", ()))
            if len(names) > 1:
                group[layer].attrs["weight_names"] = as_bytes(names[::-1])


@pytest.mark.parametrize("fixture", ["vit_b16", "vgg16", "efficientnetb0"])
def test_weights_are_matched_by_stored_name_never_by_position(published_files, tmp_path, fixture):
    reordered = tmp_path / f"{fixture}_reordered.h5"
    reorder_stored_weights(published_files / f"{fixture}.h5", reordered)
    pixels = np.load(published_files / f"{fixture}.pixels.npy")
    logits = load_published(FILES[fixture], reordered)(pixels).numpy()
    assert relative_error(logits, np.load(published_files / f"{fixture}.logits.npy")) < RTOL


@pytest.mark.parametrize("name, image_size", [("levit128", 224), ("maxvit_tiny", 224)])
def test_kecam_weights_are_matched_by_stored_name_never_by_position(kecam_files, tmp_path, name, image_size):
    reordered = tmp_path / f"{name}_reordered.h5"
    reorder_stored_weights(kecam_files / f"{name}.h5", reordered)
    _, backbone = split_pixel_model(load_published(name, reordered, image_size=image_size))
    logits = backbone(np.load(kecam_files / f"{name}_images.npy")).numpy()
    assert relative_error(logits, np.load(kecam_files / f"{name}_logits.npy")) < RTOL


def test_bad_files_get_one_line_naming_the_file_and_the_fault(published_files, tmp_path):
    truncated = tmp_path / "efficientnet_truncated.h5"
    truncated.write_bytes((published_files / "efficientnetb0.h5").read_bytes()[:1_000_000])
    text = tmp_path / "notes.h5"
    text.write_text("not a model\n")
    cases = [
        ("efficientnetb0", truncated, "truncated"),
        ("vgg16", text, "not a readable HDF5 file"),
        ("vgg16", published_files / "resnet50v2.h5", "model named 'resnet50v2', not vgg16"),
        ("vit_b16", published_files / "vgg16.h5", "not a vit-keras ViT weights file"),
        ("resnet50v2", published_files / "vit_b16.h5", "weights only"),
    ]
    for name, path, fault in cases:
        with pytest.raises(ModelFileError) as caught:
            load_published(name, path)
        message = str(caught.value)
        assert str(path) in message and fault in message and "\n" not in message, message
    with pytest.raises(FileNotFoundError, match="absent_harmonized"):
        load_published("vgg16", tmp_path / "absent_harmonized")
    with pytest.raises(ValueError, match="unknown published model 'vgg19'.*levit128"):
        load_published("vgg19", text)


UNDER_TORCH = """
import json, sys
from pathlib import Path
import numpy as np, torch
from attacks_torch.models.keras_loader import load_keras, load_published

out, files = Path(sys.argv[1]), json.loads(sys.argv[2])
report = {}
for fixture, name in files.items():
    model = load_published(name, out / f"{fixture}.h5")
    pixels = np.load(out / f"{fixture}.pixels.npy")
    x = torch.from_numpy(pixels.transpose(0, 3, 1, 2) / 255.0).float().requires_grad_(True)
    logits = model(x)
    (grad,) = torch.autograd.grad(logits[:, 0].sum(), x)
    expected = np.load(out / f"{fixture}.logits.npy")
    report[fixture] = {
        "error": float(np.abs(logits.detach().numpy() - expected).max() / np.abs(expected).max()),
        "grad_norm": float(grad.norm()), "input_size": list(model.input_size),
        "mean": list(model.mean), "std": list(model.std), "training": model.training,
    }
kecam_dir, mean, std = Path(sys.argv[3]), np.array(sys.argv[4].split(","), float), np.array(sys.argv[5].split(","), float)
for name in ("levit128", "maxvit_tiny"):  # kecam files at 224 px; their images are normalised already
    model = load_published(name, kecam_dir / f"{name}.h5")
    images = np.load(kecam_dir / f"{name}_images.npy") * std + mean  # back to [0, 1] units
    x = torch.from_numpy(images.transpose(0, 3, 1, 2)).float().requires_grad_(True)
    logits = model(x)
    (grad,) = torch.autograd.grad(logits[:, 0].sum(), x)
    expected = np.load(kecam_dir / f"{name}_logits.npy")
    report[name] = {"error": float(np.abs(logits.detach().numpy() - expected).max() / np.abs(expected).max()),
                    "grad_norm": float(grad.norm()), "input_size": list(model.input_size),
                    "mean": list(model.mean), "std": list(model.std), "training": model.training}
refused = {}
for fixture in ("vgg16", "vit_b16"):
    try:
        load_keras(out / f"{fixture}.h5")
    except ValueError as error:
        refused[fixture] = str(error)
print(json.dumps({"models": report, "refused": refused}))
"""


def test_attack_ready_under_torch_with_tensorflows_logits(published_files, kecam_files):
    """[0, 1] NCHW input, the published mean / std inside the PixelModel, gradients reach pixels."""
    files = {fixture: name for fixture, name in FILES.items() if fixture != "resnet50"}  # one ResNet
    result = run_python(
        UNDER_TORCH,
        env={"KERAS_BACKEND": "torch"},
        timeout=600,
        args=(
            str(published_files),
            json.dumps(files),
            str(kecam_files),
            ",".join(map(str, PUBLISHED_MEAN)),
            ",".join(map(str, PUBLISHED_STD)),
        ),
    )
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for fixture, entry in report["models"].items():
        assert entry["error"] < RTOL, (fixture, entry)
        assert entry["grad_norm"] > 0 and not entry["training"], (fixture, entry)
        assert entry["input_size"] == ([224, 224] if fixture in ("levit128", "maxvit_tiny") else [32, 32]), fixture
        np.testing.assert_allclose(entry["mean"], PUBLISHED_MEAN)
        np.testing.assert_allclose(entry["std"], PUBLISHED_STD)
    for _fixture, message in report["refused"].items():  # the old x * 255 path refuses, and says why
        assert "not a pixel model" in message and "published:NAME:" in message, message
        assert "\n" not in message
    assert set(report["refused"]) == {"vgg16", "vit_b16"}
    assert {"levit128", "maxvit_tiny"} <= set(report["models"])
