"""The torch stimulus reader: the same shards, pixels, maps, checks and messages as the tf.data reader."""

import json
import logging
import os
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from attacks_torch.stimuli import load_stimuli
from harmonization import clickme
from harmonization.clickme.crc32c import masked_crc32c
from harmonization.clickme.writer import encode_jpeg

RNG = np.random.default_rng(0)
SIZE = 40
NUM_CLASSES = 4


def _stimulus_record(image: np.ndarray, heatmap: np.ndarray, label: int) -> bytes:
    return clickme.encode_example(
        {
            "image": np.asarray(image, "<f4").tobytes(),
            "heatmap": np.asarray(heatmap, "<f4").tobytes(),
            "label": np.int64(label),
        }
    )


def _write_stimulus_shards(directory, n_per_shard=(3, 2), size=12):
    images, heatmaps, labels = [], [], []
    for shard, count in enumerate(n_per_shard):
        payloads = []
        for _ in range(count):
            image = RNG.uniform(0, 255, (size, size, 3)).astype(np.float32)
            heatmap = RNG.uniform(0, 1, (size, size, 1)).astype(np.float32)
            label = int(RNG.integers(0, 1000))
            images.append(image), heatmaps.append(heatmap), labels.append(label)
            payloads.append(_stimulus_record(image, heatmap, label))
        clickme.write_records(
            os.path.join(directory, f"stim-{shard:05d}-of-{len(n_per_shard):05d}.tfrecords"), payloads
        )
    return np.stack(images), np.stack(heatmaps)[..., 0], np.array(labels)


def _textured_examples(count: int, seed: int) -> list[dict]:
    """Noisy images (JPEG keeps plenty of detail to disagree on) with a block of clicks each."""
    rng = np.random.default_rng(seed)
    examples = []
    for i in range(count):
        clicks = np.zeros((SIZE, SIZE), np.uint8)
        top, left = rng.integers(0, SIZE - 12, 2)
        clicks[top : top + 12, left : left + 9] = 255
        examples.append(
            {
                "image": rng.integers(0, 256, (SIZE, SIZE, 3)).astype(np.uint8),
                "heatmap": clicks,
                "label": i % NUM_CLASSES,
            }
        )
    return examples


def _jpeg(array) -> bytes:
    return encode_jpeg(np.asarray(array, np.uint8))


def _bytes_record(**features) -> bytes:
    return clickme.encode_example({k: (np.int64(v) if k == "label" else v) for k, v in features.items()})


_GOOD_RAW = dict(
    image=np.full((12, 12, 3), 100.0, "<f4").tobytes(), heatmap=np.ones((12, 12), "<f4").tobytes(), label=1
)
BAD = {  # records both readers must refuse with the same line
    "label range": dict(_GOOD_RAW, label=9),
    "negative label": dict(_GOOD_RAW, label=-1),
    "raw map size": dict(_GOOD_RAW, heatmap=np.ones((10, 10), "<f4").tobytes()),
    "jpeg map size": dict(image=_jpeg(np.full((16, 16, 3), 90)), heatmap=_jpeg(np.zeros((8, 16))), label=0),
    "negative map": dict(_GOOD_RAW, heatmap=np.full((12, 12), -1.0, "<f4").tobytes()),
    "value range": dict(_GOOD_RAW, image=np.full((12, 12, 3), 300.0, "<f4").tobytes()),
    "nan image": dict(_GOOD_RAW, image=np.full((12, 12, 3), np.nan, "<f4").tobytes()),
    "nan map": dict(_GOOD_RAW, heatmap=np.full((12, 12), np.nan, "<f4").tobytes()),
    "missing map": dict(image=_GOOD_RAW["image"], label=0),
    "not an image": dict(_GOOD_RAW, image=b"hello"),
    "undecodable jpeg": dict(_GOOD_RAW, image=b"\xff\xd8\xff\xe0" + b"garbage" * 20),
}

TF_SIDE = textwrap.dedent("""
    import json, sys
    import harmonization  # noqa: F401  (before TensorFlow: docs/traps.md, "Import order")
    import numpy as np, tensorflow as tf
    from harmonization.data import describe_data_error, load_clickme
    out = sys.argv[1]
    # 1. TensorFlow reads the file our writer made (its reader checks both CRCs).
    parsed = []
    for raw in tf.data.TFRecordDataset(out + "/ours.tfrecords"):
        f = tf.train.Example.FromString(raw.numpy()).features.feature
        parsed.append((f["b"].bytes_list.value[0], list(f["i"].int64_list.value), list(f["f"].float_list.value)))
    assert parsed[0] == (b"hello", [-3, 0, 2**40], [0.5, -1.25]), parsed[0]
    assert parsed[1][0] == b"x" * 5000 and parsed[1][1] == [7], parsed[1][:2]
    # 2. TensorFlow writes a JPEG-layout record and an Example with every feature kind.
    rng = np.random.default_rng(1)
    image = tf.constant(rng.integers(0, 256, (40, 40, 3)), tf.uint8)
    clicks = np.zeros((40, 40, 1), np.uint8); clicks[10:20, 22:30] = 255
    kernel = np.exp(-((np.arange(10) - 4.5) ** 2) / 200.0); kernel = np.outer(kernel, kernel); kernel /= kernel.sum()
    with tf.io.TFRecordWriter(out + "/tf.tfrecords") as writer:
        ex = tf.train.Example(features=tf.train.Features(feature={
            "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[tf.io.encode_jpeg(image).numpy()])),
            "heatmap": tf.train.Feature(bytes_list=tf.train.BytesList(value=[tf.io.encode_jpeg(clicks).numpy()])),
            "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[417])),
            "floats": tf.train.Feature(float_list=tf.train.FloatList(value=[1.5, -2.0, 3.25])),
        }))
        writer.write(ex.SerializeToString())
    decoded = tf.io.decode_jpeg(tf.io.encode_jpeg(image), dct_method="INTEGER_ACCURATE").numpy()
    hm = tf.io.decode_jpeg(tf.io.encode_jpeg(clicks), channels=1, dct_method="INTEGER_ACCURATE")
    hm = tf.image.resize(tf.cast(hm, tf.float32)[None], (64, 64))
    hm = tf.nn.depthwise_conv2d(hm, kernel[:, :, None, None].astype(np.float32), [1, 1, 1, 1], "SAME")
    hm = tf.image.resize(hm, (40, 40))[0, ..., 0].numpy()
    np.savez(out + "/expected.npz", image=decoded, heatmap=hm)
    # 3. The training reader on the shards of both layouts, and on every bad record.
    for layout in ("jpeg", "stimulus"):
        batches = list(load_clickme(out + "/" + layout, split="test", batch_size=64, image_size=40, num_classes=4,
                                    deterministic=True, diffuse=layout == "jpeg"))
        np.savez(out + f"/tf-{layout}.npz", **{k: batches[0][k].numpy() for k in ("image", "heatmap", "label")})
    lines = {}
    for case in sys.argv[2:]:
        try:
            list(load_clickme(out + f"/bad/{case}.tfrecords", split="test", batch_size=4, image_size=12,
                              num_classes=4, deterministic=True, diffuse=False))
        except tf.errors.InvalidArgumentError as error:
            lines[case] = describe_data_error(error)
    json.dump(lines, open(out + "/tf-bad.json", "w"))
""")


@pytest.fixture(scope="module")
def tf_side(tmp_path_factory):
    """Shards written here without TensorFlow, then read (and some written) by TensorFlow in a subprocess."""
    directory = tmp_path_factory.mktemp("interop")
    clickme.write_records(
        directory / "ours.tfrecords",
        [
            clickme.encode_example({"b": b"hello", "i": np.array([-3, 0, 2**40]), "f": np.array([0.5, -1.25])}),
            clickme.encode_example({"b": b"x" * 5000, "i": 7, "f": np.zeros(3000, np.float32)}),
        ],
    )
    clickme.write_clickme(_textured_examples(3, seed=2), directory / "jpeg", shard_size=2)
    clickme.write_clickme(
        [
            {"image": RNG.uniform(0, 255, (SIZE, SIZE, 3)), "heatmap": RNG.uniform(0, 3, (SIZE, SIZE)), "label": i}
            for i in range(3)
        ],
        directory / "stimulus",
        layout="stimulus",
        shard_size=2,
    )
    (directory / "bad").mkdir()
    for case, features in BAD.items():
        clickme.write_records(
            directory / "bad" / f"{case}.tfrecords", [_bytes_record(**_GOOD_RAW), _bytes_record(**features)]
        )
    result = subprocess.run(
        [sys.executable, "-c", TF_SIDE, str(directory), *BAD],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return directory


def test_tensorflow_reads_what_we_write_and_we_read_what_it_writes(tf_side):
    assert (tf_side / "expected.npz").exists()  # the subprocess asserted the values it parsed
    (payload,) = list(clickme.iter_records(tf_side / "tf.tfrecords"))
    features = clickme.parse_example(payload)
    assert features["label"].tolist() == [417]
    np.testing.assert_array_equal(features["floats"], np.array([1.5, -2.0, 3.25], np.float32))


def test_jpeg_layout_decodes_and_diffuses_like_tensorflow(tf_side):
    expected = np.load(tf_side / "expected.npz")
    stimuli = load_stimuli(str(tf_side / "tf.tfrecords"))
    assert stimuli.ids == ["tf.tfrecords:0"] and stimuli.labels.tolist() == [417]
    # Pillow and TensorFlow both use libjpeg-turbo: with the accurate integer DCT the pixels agree.
    np.testing.assert_array_equal(stimuli.images[0].permute(1, 2, 0).numpy() * 255, expected["image"])
    np.testing.assert_allclose(stimuli.heatmaps[0].numpy(), expected["heatmap"], rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("layout", ["jpeg", "stimulus"])
def test_both_readers_decode_the_same_shards_to_the_same_arrays(tf_side, layout):
    """Labels and pixels agree exactly (JPEG: both decode with the accurate integer DCT; images compared
    after the same float32 division by 255); raw maps exactly, diffused JPEG clicks to float32 rounding
    of two convolutions (rtol 1e-4, atol 1e-3 on a 0-255 scale)."""
    theirs = np.load(tf_side / f"tf-{layout}.npz")
    ours = load_stimuli(tf_side / layout, num_classes=NUM_CLASSES)  # a folder, as the attack notebook passes
    assert ours.labels.tolist() == theirs["label"].tolist() and len(ours) == 3
    np.testing.assert_array_equal(ours.images.permute(0, 2, 3, 1).numpy(), theirs["image"] / np.float32(255))
    if layout == "stimulus":
        np.testing.assert_array_equal(ours.heatmaps.numpy(), theirs["heatmap"][..., 0])
    else:
        assert ours.heatmaps.max() > 10  # clicks diffused, not erased
        np.testing.assert_allclose(ours.heatmaps.numpy(), theirs["heatmap"][..., 0], rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("case", sorted(BAD))
def test_both_readers_refuse_a_bad_record_with_the_same_line(tf_side, case):
    path = tf_side / "bad" / f"{case}.tfrecords"
    with pytest.raises(clickme.ClickMeDataError) as error:
        load_stimuli(path, num_classes=NUM_CLASSES)
    line = str(error.value)
    assert line.startswith(f"bad ClickMe record: {path} record 1: ") and "\n" not in line
    assert json.loads((tf_side / "tf-bad.json").read_text())[case] == line


def test_stimulus_layout_round_trips_across_shards(tmp_path):
    images, heatmaps, labels = _write_stimulus_shards(tmp_path)
    stimuli = load_stimuli(str(tmp_path / "stim-*.tfrecords"))
    assert len(stimuli) == 5
    assert stimuli.ids[:4] == [
        "stim-00000-of-00002.tfrecords:0",
        "stim-00000-of-00002.tfrecords:1",
        "stim-00000-of-00002.tfrecords:2",
        "stim-00001-of-00002.tfrecords:0",
    ]
    assert stimuli.images.dtype == torch.float32 and stimuli.images.shape == (5, 3, 12, 12)
    np.testing.assert_allclose(stimuli.images.permute(0, 2, 3, 1).numpy(), images / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(stimuli.heatmaps.numpy(), heatmaps)
    assert stimuli.labels.dtype == torch.int64 and stimuli.labels.tolist() == labels.tolist()
    assert load_stimuli(str(tmp_path / "stim-*.tfrecords"), limit=4).ids == stimuli.ids[:4]
    assert load_stimuli(tmp_path).ids == stimuli.ids


def test_labels_are_checked_against_the_number_of_classes(tmp_path):
    _write_stimulus_shards(tmp_path, n_per_shard=(2,))
    assert len(load_stimuli(tmp_path)) == 2  # labels up to 999 are fine when the classes are not known
    labels = load_stimuli(tmp_path).labels.tolist()
    with pytest.raises(clickme.ClickMeDataError, match=rf"record 0: label {labels[0]} is outside \[0, 10\)"):
        load_stimuli(tmp_path, num_classes=10)


def test_unit_range_images_are_warned_about(tmp_path, caplog):
    clickme.write_records(
        tmp_path / "unit.tfrecords", [_stimulus_record(np.full((12, 12, 3), 0.5), np.ones((12, 12)), 0)]
    )
    with caplog.at_level(logging.WARNING, logger="attacks_torch.stimuli"):
        stimuli = load_stimuli(tmp_path / "unit.tfrecords")
    assert len(stimuli) == 1  # a warning, not an error
    assert "the brightest pixel is 0.5: these images look like [0, 1] data" in caplog.text


def test_bad_paths_and_damaged_files_get_one_line_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    for item, message in [
        (tmp_path / "nothing-here*.tfrecords", "no stimulus file matches"),
        (tmp_path / "missing.tfrecords", "no stimulus file at"),
        (tmp_path / "empty", "no stimulus file in directory"),
    ]:
        with pytest.raises(FileNotFoundError, match=message) as error:
            load_stimuli(item)
        assert "\n" not in str(error.value)
    _write_stimulus_shards(tmp_path, n_per_shard=(3,))
    data = bytearray((tmp_path / "stim-00000-of-00001.tfrecords").read_bytes())
    record = len(data) // 3
    data[record + 100] ^= 0x01  # one flipped bit in the second record's payload
    (tmp_path / "bad.tfrecords").write_bytes(bytes(data))
    with pytest.raises(clickme.ClickMeDataError, match=r"bad\.tfrecords: record 1 is corrupt"):
        load_stimuli(tmp_path / "bad.tfrecords")
    (tmp_path / "short.tfrecords").write_bytes(bytes(data[: record + 50]))
    with pytest.raises(clickme.ClickMeDataError, match=r"short\.tfrecords: record 1 is truncated"):
        load_stimuli(tmp_path / "short.tfrecords")
    header = struct.pack("<Q", 2**40)
    (tmp_path / "huge.tfrecords").write_bytes(header + struct.pack("<I", masked_crc32c(header)) + bytes(20))
    with pytest.raises(clickme.ClickMeDataError, match=r"huge\.tfrecords: record 0 is truncated .*1099511627776"):
        load_stimuli(tmp_path / "huge.tfrecords")
    clickme.write_records(
        tmp_path / "sizes.tfrecords",
        [
            _stimulus_record(np.zeros((12, 12, 3)), np.zeros((12, 12)), 0),
            _stimulus_record(np.zeros((8, 8, 3)), np.zeros((8, 8)), 0),
        ],
    )
    with pytest.raises(clickme.ClickMeDataError, match=r"sizes\.tfrecords record 1: image is 8x8, the first one 12x12"):
        load_stimuli(tmp_path / "sizes.tfrecords")
