"""ClickMe records and shards: framing checksums, write -> read round trips, the writer's checks."""

import os
import struct

import numpy as np
import pytest

import harmonization  # noqa: F401  (loads triton before TensorFlow: docs/traps.md, "Import order")
import tensorflow as tf

from harmonization.data import diffuse_heatmaps, load_clickme, write_clickme
from harmonization.clickme.crc32c import crc32c, masked_crc32c
from harmonization.data.shards import scan_shard

SIZE = 32


def smooth_examples(count, seed=0, size=SIZE):
    """Images and heatmaps made of a few Gaussian blobs: JPEG keeps them to within a few levels."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:size, 0:size]
    examples = []
    for i in range(count):
        center = rng.uniform(6, size - 6, 2)
        blob = np.exp(-((rows - center[0]) ** 2 + (cols - center[1]) ** 2) / (2 * 5.0**2))
        image = 40 + 180 * blob[..., None] * rng.uniform(0.5, 1.0, 3)
        examples.append(
            {"image": np.rint(image).astype(np.uint8), "heatmap": np.rint(255 * blob).astype(np.uint8), "label": i % 7}
        )
    return examples


def read_all(pattern, **kwargs):
    options = dict(split="test", batch_size=64, image_size=SIZE, num_classes=7, deterministic=True, diffuse=False)
    options.update(kwargs)
    batches = list(load_clickme(pattern, **options))
    return {key: np.concatenate([b[key].numpy() for b in batches]) for key in batches[0]}


def test_crc32c_matches_the_published_check_value():
    # The CRC-32C check value of the ASCII digits 1..9 (RFC 3720, appendix B.4).
    assert crc32c(b"123456789") == 0xE3069283


def test_masked_crc_matches_headers_written_by_tensorflow(tmp_path):
    path = str(tmp_path / "x.tfrecords")
    payloads = [b"a", b"hello world" * 30, b""]
    with tf.io.TFRecordWriter(path) as writer:
        for payload in payloads:
            writer.write(payload)
    data = open(path, "rb").read()
    offset = 0
    for payload in payloads:
        length, length_crc = struct.unpack("<QI", data[offset : offset + 12])
        assert length == len(payload)
        assert masked_crc32c(data[offset : offset + 8]) == length_crc
        (data_crc,) = struct.unpack("<I", data[offset + 12 + length : offset + 16 + length])
        assert masked_crc32c(payload) == data_crc
        offset += 16 + length
    index = scan_shard(path)
    assert (index.count, index.readable, index.error) == (3, 3, None)


def test_jpeg_round_trip_keeps_labels_and_heatmaps_within_jpeg_loss(tmp_path):
    examples = smooth_examples(10)
    paths = write_clickme(examples, tmp_path, shard_size=4, prefix="rt")
    assert [os.path.basename(p) for p in paths] == [f"rt-{i:05d}-of-00003.tfrecords" for i in range(3)]
    got = read_all(str(tmp_path / "rt-*.tfrecords"))
    assert got["label"].tolist() == [e["label"] for e in examples]
    assert got["label"].dtype == np.int64 and got["token"].tolist() == [1.0] * 10
    heatmaps = np.stack([e["heatmap"] for e in examples]).astype(np.float32)
    images = np.stack([e["image"] for e in examples]).astype(np.float32)
    heatmap_error = np.abs(got["heatmap"][..., 0] - heatmaps)
    image_error = np.abs(got["image"] - images)
    assert heatmap_error.max() <= 16.0 and heatmap_error.mean() <= 2.0  # JPEG quality 95
    assert image_error.max() <= 16.0 and image_error.mean() <= 2.0


def test_stimulus_layout_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(1)
    examples = [
        {
            "image": rng.uniform(0, 255, (SIZE, SIZE, 3)).astype(np.float32),
            "heatmap": rng.uniform(0, 3, (SIZE, SIZE, 1)).astype(np.float32),
            "label": i,
        }
        for i in range(5)
    ]
    paths = write_clickme(examples, tmp_path, layout="stimulus", prefix="stim")
    record = next(iter(tf.data.TFRecordDataset(paths)))
    features = tf.train.Example.FromString(record.numpy()).features.feature
    assert len(features["image"].bytes_list.value[0]) == SIZE * SIZE * 3 * 4
    assert len(features["heatmap"].bytes_list.value[0]) == SIZE * SIZE * 4
    got = read_all(paths)
    np.testing.assert_array_equal(got["image"], np.stack([e["image"] for e in examples]))
    np.testing.assert_array_equal(got["heatmap"], np.stack([e["heatmap"] for e in examples]))
    assert got["label"].tolist() == [0, 1, 2, 3, 4]


def test_both_layouts_read_together_from_a_directory(tmp_path):
    write_clickme(smooth_examples(3), tmp_path, prefix="a")
    stimuli = [
        {"image": e["image"].astype(np.float32), "heatmap": e["heatmap"].astype(np.float32), "label": e["label"]}
        for e in smooth_examples(2, seed=5)
    ]
    write_clickme(stimuli, tmp_path, layout="stimulus", prefix="b")
    got = read_all(str(tmp_path))
    assert got["image"].shape == (5, SIZE, SIZE, 3) and got["heatmap"].shape == (5, SIZE, SIZE, 1)


def test_only_raw_clicks_are_diffused_and_stimulus_maps_are_kept_as_they_are(tmp_path):
    write_clickme(smooth_examples(3), tmp_path, prefix="a")  # JPEG layout: raw clicks
    stimuli = [
        {"image": e["image"].astype(np.float32), "heatmap": e["heatmap"].astype(np.float32), "label": e["label"]}
        for e in smooth_examples(2, seed=5)
    ]
    write_clickme(stimuli, tmp_path, layout="stimulus", prefix="b")  # already diffused
    raw = read_all(str(tmp_path))
    got = read_all(str(tmp_path), diffuse=True)
    expected = diffuse_heatmaps(tf.constant(raw["heatmap"][:3]), (SIZE, SIZE)).numpy()
    np.testing.assert_allclose(got["heatmap"][:3], expected, rtol=1e-5, atol=1e-5)
    assert not np.allclose(expected, raw["heatmap"][:3], atol=1.0)  # diffusion changes these maps
    np.testing.assert_array_equal(got["heatmap"][3:, ..., 0], np.stack([e["heatmap"] for e in stimuli]))


def test_float_heatmaps_are_stored_scaled_to_a_peak_of_255(tmp_path):
    example = smooth_examples(1)[0]
    example["heatmap"] = example["heatmap"].astype(np.float64) / 255.0 * 0.01
    write_clickme([example], tmp_path)
    got = read_all(str(tmp_path / "clickme-*"))
    assert 245 <= got["heatmap"].max() <= 255


def test_rewriting_a_prefix_replaces_its_older_shards(tmp_path):
    write_clickme(smooth_examples(6), tmp_path, shard_size=2, prefix="p")
    other = write_clickme(smooth_examples(2), tmp_path, prefix="q")
    paths = write_clickme(smooth_examples(3), tmp_path, shard_size=5, prefix="p")
    assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(p) for p in paths + other)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda e: e.pop("heatmap"), "example 2: missing key"),
        (
            lambda e: e.update(heatmap=np.zeros((SIZE, SIZE - 1), np.uint8)),
            "example 2: heatmap 32x31 does not match image 32x32",
        ),
        (lambda e: e.update(label=-1), r"example 2: label -1 is outside \[0, 7\)"),
        (lambda e: e.update(label=9), r"example 2: label 9 is outside \[0, 7\)"),
        (lambda e: e.update(label=1.5), "example 2: label must be an integer"),
        (lambda e: e.update(image=np.full((SIZE, SIZE, 3), 300.0)), r"example 2: image values lie outside \[0, 255\]"),
        (lambda e: e.update(heatmap=-np.ones((SIZE, SIZE))), "example 2: heatmap holds negative values"),
        (lambda e: e.update(image=np.zeros((SIZE, SIZE))), "example 2: image must be HxWx3"),
    ],
)
def test_writer_rejects_bad_examples_naming_them_and_leaves_no_files(tmp_path, change, message):
    examples = smooth_examples(4)
    change(examples[2])
    with pytest.raises(ValueError, match=message):
        write_clickme(examples, tmp_path, shard_size=1, num_classes=7)
    assert os.listdir(tmp_path) == []


def test_writer_rejects_an_empty_set_and_a_bad_layout(tmp_path):
    with pytest.raises(ValueError, match="no examples"):
        write_clickme([], tmp_path)
    with pytest.raises(ValueError, match="layout must be one of"):
        write_clickme(smooth_examples(1), tmp_path, layout="png")
