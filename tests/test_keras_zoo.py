"""The Keras model zoo: pixel models whose preprocessing matches keras.applications."""

import numpy as np
import pytest

from builders import clickme_arrays
import keras

from harmonization.models import MODEL_NAMES, build_model, load_harmonized, split_pixel_model

SIZES = {"small_cnn": 32, "small_cnn_plain": 32}  # the others are built at 64x64 here


def keras_preprocessing(name: str, pixels: np.ndarray) -> np.ndarray:
    """The preprocessing keras.applications documents for each network."""
    apps = keras.applications
    reference = {
        "vgg16": apps.vgg16.preprocess_input,  # caffe: RGB -> BGR, minus the ImageNet BGR mean
        "resnet50v2": apps.resnet_v2.preprocess_input,  # [-1, 1]
        "efficientnetb0": apps.efficientnet.preprocess_input,  # identity: done inside the network
        "convnext_tiny": lambda x: apps.imagenet_utils.preprocess_input(x, mode="torch"),
        "vit_b16": lambda x: apps.imagenet_utils.preprocess_input(x, mode="torch"),  # published: x / 255, mean / std
        "maxvit_tiny": lambda x: apps.imagenet_utils.preprocess_input(x, mode="torch"),
        "levit128": lambda x: apps.imagenet_utils.preprocess_input(x, mode="torch"),
        "small_cnn": lambda x: x / 127.5 - 1.0,
        "small_cnn_plain": lambda x: x / 127.5 - 1.0,
    }[name]
    return np.asarray(reference(pixels.copy()))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_zoo_model_is_a_pixel_model_with_the_networks_preprocessing(name):
    size = SIZES.get(name, 64)
    model = build_model(name, num_classes=5, image_size=size)
    preprocess, backbone = split_pixel_model(model)
    assert model.input_shape == (None, size, size, 3)
    pixels = clickme_arrays(2, size, 5)["image"]
    logits = model(pixels).numpy()
    assert logits.shape == (2, 5) and np.isfinite(logits).all()
    np.testing.assert_allclose(preprocess(pixels).numpy(), keras_preprocessing(name, pixels), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(backbone(preprocess(pixels)).numpy(), logits, rtol=1e-5, atol=1e-5)
    assert all(type(layer).__module__.startswith("keras.") for layer in preprocess.layers)
    assert not preprocess.trainable_weights


@pytest.mark.parametrize("name", ["small_cnn", "small_cnn_plain"])
def test_small_cnn_ends_with_log_probabilities(name):
    model = build_model(name, 4, 32)
    assert any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.get_layer("backbone").layers) == (
        name == "small_cnn"
    )
    logits = model(clickme_arrays(3, 32, 4)["image"]).numpy()
    np.testing.assert_allclose(np.exp(logits).sum(1), 1.0, rtol=1e-5)
    assert model.count_params() < 100_000


def test_unknown_names_and_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown model 'resnet9'.*small_cnn.*convnext_tiny"):
        build_model("resnet9", 4)
    with pytest.raises(ValueError, match="num_classes"):
        build_model("small_cnn", 1)
    with pytest.raises(FileNotFoundError, match="missing.weights.h5"):
        build_model("small_cnn", 4, 32, weights=str(tmp_path / "missing.weights.h5"))
    with pytest.raises(FileNotFoundError, match="nothing.keras"):
        load_harmonized(tmp_path / "nothing.keras")


def test_vgg16_has_the_published_fully_connected_top():
    backbone = build_model("vgg16", 5, 32).get_layer("backbone")
    dense = [(layer.name, layer.units) for layer in backbone.layers if isinstance(layer, keras.layers.Dense)]
    assert dense == [("fc1", 4096), ("fc2", 4096), ("logits", 5)]


def _one_line_naming(error: pytest.ExceptionInfo, path, fault: str) -> None:
    message = str(error.value)
    assert str(path) in message and fault in message and "\n" not in message, message


def test_files_that_are_not_what_their_name_says_get_one_line(tmp_path):
    import json
    import zipfile

    from harmonization.models import ModelFileError

    text_h5, text_keras = tmp_path / "notes.h5", tmp_path / "notes.keras"
    text_h5.write_text("not a model\n")
    text_keras.write_text("not a model\n")
    model = build_model("small_cnn", 4, 32)
    model.save(tmp_path / "good.keras")
    no_config, bad_layer = tmp_path / "no_config.keras", tmp_path / "bad_layer.keras"
    with (
        zipfile.ZipFile(tmp_path / "good.keras") as good,
        zipfile.ZipFile(no_config, "w") as first,
        zipfile.ZipFile(bad_layer, "w") as second,
    ):
        for item in good.namelist():
            data = good.read(item)
            if item != "config.json":
                first.writestr(item, data)
            else:
                config = json.loads(data)
                config["config"]["layers"][1]["class_name"] = "NoSuchLayer"
                data = json.dumps(config)
            second.writestr(item, data)
    for path, fault in [
        (text_h5, "not a readable HDF5 file"),
        (text_keras, "not a zip file"),
        (no_config, "without config.json"),
        (bad_layer, "cannot be rebuilt"),
    ]:
        with pytest.raises(ModelFileError) as caught:
            load_harmonized(path)
        _one_line_naming(caught, path, fault)
    model.save_weights(tmp_path / "only.weights.h5")
    (tmp_path / "only.weights.h5").rename(tmp_path / "only.h5")
    with pytest.raises(ModelFileError) as caught:
        load_harmonized(tmp_path / "only.h5")
    _one_line_naming(caught, tmp_path / "only.h5", "")


@pytest.mark.parametrize("suffix", [".keras", ".h5", ".weights.h5"])
def test_load_harmonized_reads_every_saved_format(tmp_path, suffix):
    model = build_model("small_cnn", 4, 32)
    path = str(tmp_path / f"model{suffix}")
    if suffix == ".weights.h5":
        model.save_weights(path)
        with pytest.raises(ValueError, match="needs name= and num_classes="):
            load_harmonized(path)
        loaded = load_harmonized(path, "small_cnn", 4, 32)
    else:
        model.save(path)
        loaded = load_harmonized(path)
    pixels = clickme_arrays(2, 32, 4)["image"]
    np.testing.assert_allclose(loaded(pixels).numpy(), model(pixels).numpy(), rtol=1e-6, atol=1e-6)
    assert split_pixel_model(loaded) is not None


def test_a_keras_notop_weights_file_initialises_the_base_network(tmp_path):
    base = keras.applications.EfficientNetB0(include_top=False, weights=None, input_shape=(64, 64, 3), pooling="avg")
    base.save(tmp_path / "efficientnetb0_notop.h5")  # the legacy format Keras' own files use
    model = build_model("efficientnetb0", 3, 64, weights=str(tmp_path / "efficientnetb0_notop.h5"))
    loaded = model.get_layer("backbone").weights
    assert [v.path for v in loaded[len(base.weights) :]] == ["logits/kernel", "logits/bias"]
    for variable, expected in zip(loaded, base.weights):  # same constructor, same order
        np.testing.assert_array_equal(variable.numpy(), expected.numpy())
