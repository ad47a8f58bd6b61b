"""Issue #22, model files: readers that stay in their file, archive members capped before they
are read, and a Keras 3 legacy .h5 (flat ``output_layers``) that loads (each case builds its file)."""

import zipfile

import h5py
import numpy as np
import pytest

import builders
import keras

from harmonization.cli import main
from harmonization.models.published import load_published
from harmonization.models.pixel import IMAGENET_MEAN, IMAGENET_STD


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return builders.write_random_label_shards(tmp_path_factory.mktemp("data"), n=16, seed=2)


def legacy_file(path, make_kernel) -> None:
    """A legacy Keras .h5 layout (model_weights/layer_names/weight_names) whose one kernel is made
    by ``make_kernel(group, name)``."""
    with h5py.File(path, "w") as handle:
        handle.attrs["model_config"] = '{"class_name": "Functional", "config": {"layers": []}}'
        weights = handle.create_group("model_weights")
        weights.attrs["layer_names"] = [b"dense"]
        layer = weights.create_group("dense")
        layer.attrs["weight_names"] = [b"dense/kernel:0"]
        make_kernel(layer, "dense/kernel:0")


def bad_files(tmp_path) -> dict:
    """{file name: what the message must say} for files whose data lie elsewhere or are absurd."""
    elsewhere = tmp_path / "elsewhere.bin"
    elsewhere.write_bytes(np.arange(16, dtype=np.float32).tobytes())
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as handle:
        handle["kernel"] = np.ones((4, 4), np.float32)
    external = lambda group, name: group.create_dataset(  # noqa: E731
        name, (4, 4), np.float32, external=[(str(elsewhere), 0, 64)]
    )

    def virtual(group, name):
        layout = h5py.VirtualLayout((4, 4), np.float32)
        layout[:] = h5py.VirtualSource(str(other), "kernel", (4, 4))
        group.create_virtual_dataset(name, layout)

    def link(group, name):
        group[name] = h5py.ExternalLink(str(other), "kernel")

    huge = lambda group, name: group.create_dataset(name, (2**40,), np.float32, chunks=(1024,))  # noqa: E731
    cases = {
        "external.h5": (external, "is stored in external files"),
        "virtual.h5": (virtual, "is a virtual dataset"),
        "link.h5": (link, f"is a link to '{other}'"),
        "huge.h5": (huge, "declares 4096 GiB"),
    }
    for name, (make, _) in cases.items():
        legacy_file(tmp_path / name, make)
    return {name: expected for name, (_, expected) in cases.items()}


def test_h5_files_that_point_elsewhere_or_lie_about_their_size_are_refused(shards, tmp_path, capsys):
    expected = bad_files(tmp_path)
    outside = {p.name: p.read_bytes() for p in (tmp_path / "elsewhere.bin", tmp_path / "other.h5")}
    for name, says in expected.items():
        path = tmp_path / name
        before = path.read_bytes()
        with pytest.raises(SystemExit) as exit_info:
            main(["evaluate", "--weights", str(path), "--data", shards])
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert exit_info.value.code == 2 and len(lines) == 1, (name, lines)
        assert lines[0].startswith(f"harmonize: error: model file {path}: ") and says in lines[0], lines
        assert path.read_bytes() == before
        with pytest.raises(ValueError, match=says):
            load_published("resnet50v2", path)
    assert {p.name: p.read_bytes() for p in (tmp_path / "elsewhere.bin", tmp_path / "other.h5")} == outside


def test_a_keras_archive_member_is_size_checked_before_it_is_read(shards, tmp_path, capsys):
    path = tmp_path / "big-config.keras"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("metadata.json", "{}")
        archive.writestr("config.json", b" " * (65 * 2**20) + b"{}")
    before = path.read_bytes()
    assert len(before) < 2**20  # the archive is small; its config declares 65 MiB
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--weights", str(path), "--data", shards])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert exit_info.value.code == 2 and len(lines) == 1
    assert lines[0] == (
        f"harmonize: error: model file {path}: its member config.json declares "
        f"{65 * 2**20 + 2:,} bytes, more than a saved model holds ({64 * 2**20:,} at most)"
    )
    assert path.read_bytes() == before


def test_a_keras3_legacy_h5_with_a_flat_output_list_loads_as_published(tmp_path):
    keras.utils.set_random_seed(3)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, name="conv1_conv")(inputs)
    x = keras.layers.Activation("relu", name="conv5_block3_out")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    original = keras.Model(inputs, keras.layers.Dense(5, name="predictions")(x), name="resnet50v2")
    original.save(tmp_path / "keras3.h5")
    with h5py.File(tmp_path / "keras3.h5", "r") as handle:
        assert '"output_layers": ["predictions", 0, 0]' in handle.attrs["model_config"]  # the flat form
    loaded = load_published("resnet50v2", tmp_path / "keras3.h5")
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    expected = original((pixels / 255 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD))
    np.testing.assert_allclose(np.asarray(loaded(pixels)), np.asarray(expected), rtol=1e-4, atol=1e-5)


def test_a_raw_record_starting_with_jpeg_magic_bytes_is_read_as_raw(tmp_path):
    from harmonization.clickme import iter_clickme, write_clickme
    from harmonization.data import load_clickme

    pixel = np.frombuffer(b"\xff\xd8\x00\x43", "<f4")[0]  # about 128.85: starts like a JPEG
    assert 128 < pixel < 129
    arrays = builders.clickme_arrays(2, size=16, seed=4)
    arrays["image"][:, 0, 0, 0] = pixel
    examples = [
        {"image": arrays["image"][i], "heatmap": arrays["heatmap"][i, ..., 0], "label": int(arrays["label"][i])}
        for i in range(2)
    ]
    (path,) = write_clickme(examples, tmp_path, layout="stimulus", num_classes=4)
    with open(path, "rb") as handle:
        assert b"\xff\xd8\x00\x43" in handle.read()
    records = list(iter_clickme(path, num_classes=4))
    np.testing.assert_array_equal(np.stack([r.image for r in records]), arrays["image"])
    assert not any(r.clicks for r in records)
    batch = next(iter(load_clickme(path, "test", batch_size=2, image_size=16, num_classes=4)))
    read = np.asarray(batch["image"])
    order = np.argsort(read.sum((1, 2, 3)))  # the reader may hand the two records in either order
    np.testing.assert_allclose(read[order], arrays["image"][np.argsort(arrays["image"].sum((1, 2, 3)))], atol=1e-4)
