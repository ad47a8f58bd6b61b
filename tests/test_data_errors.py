"""Bad ClickMe input: each gives a one-line error naming the file (and record), or is skipped and counted."""

import logging
import os
import re
import struct

import numpy as np
import pytest

import harmonization  # noqa: F401  (loads triton before TensorFlow: docs/traps.md, "Import order")
import tensorflow as tf

from harmonization.clickme.crc32c import masked_crc32c
from harmonization.data import ClickMeDataError, describe_data_error, load_clickme, write_clickme

SIZE = 16
NUM_CLASSES = 4


def jpeg(array):
    return tf.io.encode_jpeg(np.asarray(array, np.uint8)).numpy()


def record(image=None, heatmap=None, label=None):
    """A serialized Example with exactly the given features (None leaves the key out)."""
    feature = {}
    for key, value in (("image", image), ("heatmap", heatmap)):
        if value is not None:
            feature[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
    if label is not None:
        feature["label"] = tf.train.Feature(int64_list=tf.train.Int64List(value=[label]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


GOOD = dict(image=jpeg(np.full((SIZE, SIZE, 3), 100)), heatmap=jpeg(np.full((SIZE, SIZE, 1), 50)), label=1)


def write_records(path, records):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for item in records:
            writer.write(item)
    return str(path)


def good_shard(directory, count=5, prefix="good"):
    examples = [
        {
            "image": np.full((SIZE, SIZE, 3), 100, np.uint8),
            "heatmap": np.full((SIZE, SIZE), 50, np.uint8),
            "label": i % NUM_CLASSES,
        }
        for i in range(count)
    ]
    return write_clickme(examples, directory, prefix=prefix)[0]


def load(paths, **kwargs):
    return load_clickme(
        paths, split="test", batch_size=4, image_size=SIZE, num_classes=NUM_CLASSES, deterministic=True, **kwargs
    )


def record_offsets(path):
    data = open(path, "rb").read()
    offsets, offset = [], 0
    while offset < len(data):
        offsets.append(offset)
        offset += 16 + int.from_bytes(data[offset : offset + 8], "little")
    return data, offsets


def test_a_missing_path_an_empty_glob_and_an_empty_directory(tmp_path):
    cases = [
        (tmp_path / "nope.tfrecords", r"no ClickMe shard at '.*nope\.tfrecords' \(no such file"),
        (tmp_path / "*.tfrecords", r"no ClickMe shard matches '.*\*\.tfrecords'"),
        (tmp_path, r"no ClickMe shard in directory .* holds no \*\.tfrecord\* file"),
    ]
    for path, message in cases:
        with pytest.raises(FileNotFoundError, match=message) as error:
            load(str(path))
        assert "\n" not in str(error.value)
    with pytest.raises(FileNotFoundError, match=r"no ImageNet shard \(mix_with\) matches"):
        load(good_shard(tmp_path), mix_with=str(tmp_path / "imagenet-*"))


def huge_length_shard(path, good_records=()):
    """A shard whose next length header claims 2**40 bytes, with a valid CRC of that header."""
    write_records(path, good_records)
    header = struct.pack("<Q", 2**40)
    with open(path, "ab") as handle:
        handle.write(header + struct.pack("<I", masked_crc32c(header)) + b"x" * 20)
    return str(path)


def test_a_huge_length_header_is_named_before_tensorflow_reads_it(tmp_path):
    # TensorFlow's own reader crashes the process on this header (SIGSEGV): the scan must stop it.
    clickme = huge_length_shard(tmp_path / "huge.tfrecords", [record(**GOOD)])
    with pytest.raises(ClickMeDataError, match=f"{clickme}: record 1 is truncated .*claims 1099511627776 bytes"):
        load(clickme)
    imagenet = huge_length_shard(tmp_path / "in.tfrecords", [imagenet_record()])
    with pytest.raises(ClickMeDataError, match=f"{imagenet}: record 1 is truncated .*claims 1099511627776 bytes"):
        load(good_shard(tmp_path), mix_with=imagenet, clickme_fraction=0.5)


def test_a_truncated_shard_is_named_with_its_record(tmp_path):
    path = good_shard(tmp_path)
    data, _ = record_offsets(path)
    with open(path, "wb") as handle:
        handle.write(data[:-30])
    with pytest.raises(ClickMeDataError, match=f"{path}: record 4 is truncated"):
        load(path)


def flip_bits(path, position, mask):
    """Flip the bits ``mask`` of the byte at ``position`` of the file ``path``; returns its old bytes."""
    data = open(path, "rb").read()
    damaged = bytearray(data)
    damaged[position] ^= mask
    open(path, "wb").write(bytes(damaged))
    return data


@pytest.mark.parametrize(
    "record_index, within, mask, what",
    [
        (2, 40, 0xFF, "is corrupt (its data checksum does not match"),
        (3, 1, 0x10, "has a corrupt length header"),
    ],
)
def test_a_damaged_record_is_named_in_one_line(tmp_path, record_index, within, mask, what):
    path = good_shard(tmp_path)
    _, offsets = record_offsets(path)
    flip_bits(path, offsets[record_index] + within, mask)
    with pytest.raises(ClickMeDataError, match=re.escape(f"{path}: record {record_index} {what}")) as error:
        load(path)
    assert "\n" not in str(error.value)


BAD_RECORDS = {
    "missing key": (record(image=GOOD["image"], label=1), "missing key 'heatmap'"),
    "missing label": (record(image=GOOD["image"], heatmap=GOOD["heatmap"]), "missing key 'label'"),
    "undecodable jpeg": (
        record(image=b"\xff\xd8\xff\xe0" + b"garbage" * 20, heatmap=GOOD["heatmap"], label=1),
        "cannot be parsed or decoded",
    ),
    "not an image": (
        record(image=b"hello", heatmap=GOOD["heatmap"], label=1),
        "'image' is neither a JPEG or raw float32 bytes of a square HxWx3 image (5 bytes)",
    ),
    "shape mismatch": (
        record(image=GOOD["image"], heatmap=jpeg(np.zeros((8, SIZE, 1))), label=1),
        "heatmap 8x16 does not match image 16x16",
    ),
    "label too large": (record(**dict(GOOD, label=9)), "label 9 is outside [0, 4)"),
    "negative label": (record(**dict(GOOD, label=-2)), "label -2 is outside [0, 4)"),
    "raw image range": (
        record(
            image=np.full((SIZE, SIZE, 3), 300.0, "<f4").tobytes(),
            heatmap=np.zeros((SIZE, SIZE), "<f4").tobytes(),
            label=0,
        ),
        "image values lie outside [0, 255]",
    ),
    "negative heatmap": (
        record(
            image=np.full((SIZE, SIZE, 3), 9.0, "<f4").tobytes(),
            heatmap=np.full((SIZE, SIZE), -1.0, "<f4").tobytes(),
            label=0,
        ),
        "heatmap holds negative values",
    ),
    "nan heatmap": (
        record(image=GOOD["image"], heatmap=np.full((SIZE, SIZE), np.nan, "<f4").tobytes(), label=0),
        "heatmap holds non-finite values",
    ),
    "nan image": (
        record(image=np.full((SIZE, SIZE, 3), np.nan, "<f4").tobytes(), heatmap=GOOD["heatmap"], label=0),
        "image holds non-finite values",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_RECORDS))
def test_a_bad_record_stops_iteration_with_one_line_naming_file_and_record(tmp_path, case):
    bad, what = BAD_RECORDS[case]
    path = write_records(tmp_path / "bad.tfrecords", [record(**GOOD), bad, record(**GOOD)])
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        list(load(path))
    line = describe_data_error(error.value)
    assert line is not None and "\n" not in line
    assert line.startswith(f"bad ClickMe record: {path} record 1: ")
    assert what in line, line


def test_skip_corrupt_skips_counts_and_logs_bad_records_and_shard_tails(tmp_path, capfd, caplog):
    bad_records = [BAD_RECORDS[case][0] for case in ("missing key", "undecodable jpeg", "label too large")]
    mixed = write_records(
        tmp_path / "a-mixed.tfrecords",
        [record(**GOOD), bad_records[0], record(**GOOD), bad_records[1], record(**GOOD), bad_records[2]],
    )
    truncated = good_shard(tmp_path, count=5, prefix="b")
    data, _ = record_offsets(truncated)
    open(truncated, "wb").write(data[:-30])
    with caplog.at_level(logging.WARNING, logger="harmonization.data"):
        dataset = load(str(tmp_path / "*.tfrecords"), skip_corrupt=True)
    assert f"skipping 1 record(s) of {truncated}: record 4 is truncated" in caplog.text
    assert dataset.skip_counter.count == 1
    labels = np.concatenate([batch["label"].numpy() for batch in dataset])
    assert labels.tolist() == [1, 1, 1, 0, 1, 2, 3]  # 3 good records of a-mixed, 4 readable ones of b
    assert dataset.skip_counter.count == 4
    logged = capfd.readouterr().err
    for index in (1, 3, 5):
        assert f"bad ClickMe record: {mixed} record {index}:" in logged


def test_describe_data_error_ignores_other_errors():
    assert describe_data_error(ValueError("something else")) is None


def test_without_data_checks_truncation_is_still_found(tmp_path):
    path = good_shard(tmp_path)
    data, _ = record_offsets(path)
    open(path, "wb").write(data[:-30])
    assert os.path.getsize(path) == len(data) - 30
    with pytest.raises(ClickMeDataError, match="record 4 is truncated"):
        load(path, check_data=False)


def imagenet_record(image=GOOD["image"], label=2):
    feature = {
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def test_a_bad_imagenet_style_record_is_named_too(tmp_path):
    clickme = good_shard(tmp_path)
    imagenet = write_records(tmp_path / "in.tfrecords", [imagenet_record(), imagenet_record(label=1000)])
    dataset = load(clickme, mix_with=imagenet, clickme_fraction=0.5, seed=0)
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        list(dataset)
    line = describe_data_error(error.value)
    assert line == f"bad ImageNet-style record: {imagenet} record 1: label 1000 is outside [0, 4)"


def test_a_damaged_imagenet_style_shard_is_named_like_a_clickme_one(tmp_path):
    clickme = good_shard(tmp_path)
    imagenet = write_records(tmp_path / "in.tfrecords", [imagenet_record(label=i % 4) for i in range(6)])
    _, offsets = record_offsets(imagenet)
    data = flip_bits(imagenet, offsets[2] + 40, 0xFF)
    with pytest.raises(ClickMeDataError, match=f"^{imagenet}: record 2 is corrupt .* skips it\\)$"):
        load(clickme, mix_with=imagenet, clickme_fraction=0.5, seed=0)
    open(imagenet, "wb").write(data[:-30])
    with pytest.raises(ClickMeDataError, match=f"^{imagenet}: record 5 is truncated"):
        load(clickme, mix_with=imagenet, clickme_fraction=0.5, seed=0)
    batches = list(load(clickme, mix_with=imagenet, clickme_fraction=0.5, seed=0, skip_corrupt=True))
    tokens = np.concatenate([batch["token"].numpy() for batch in batches])
    assert (tokens == 0).sum() == 5


def test_images_stored_in_unit_range_are_warned_about(tmp_path, caplog):
    examples = [
        {"image": np.full((SIZE, SIZE, 3), 0.8, np.float32), "heatmap": np.ones((SIZE, SIZE), np.float32), "label": 0}
    ]
    (path,) = write_clickme(examples, tmp_path, layout="stimulus", prefix="unit")
    with caplog.at_level(logging.WARNING, logger="harmonization.data"):
        load(path)
    assert f"{path}: the brightest pixel is 0.8: these images look like [0, 1] data" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="harmonization.data"):
        load(good_shard(tmp_path))
    assert "look like [0, 1]" not in caplog.text
