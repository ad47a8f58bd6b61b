"""TFRecord reading without TensorFlow, and ClickMe stimuli as torch tensors."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attacks_torch import tfrecord
from attacks_torch.stimuli import Stimuli, load_stimuli

RNG = np.random.default_rng(0)


def _stimulus_record(image: np.ndarray, heatmap: np.ndarray, label: int) -> bytes:
    return tfrecord.encode_example({
        "image": image.astype("<f4").tobytes(),
        "heatmap": heatmap.astype("<f4").tobytes(),
        "label": np.int64(label),
    })


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
        tfrecord.write_records(os.path.join(directory, f"stim-{shard:05d}-of-{len(n_per_shard):05d}.tfrecords"),
                               payloads)
    return np.stack(images), np.stack(heatmaps)[..., 0], np.array(labels)


def test_crc32c_matches_the_published_check_value():
    # RFC 3720 (iSCSI) B.4 / the CRC catalogue: CRC-32C("123456789") = 0xE3069283.
    assert tfrecord.crc32c(b"123456789") == 0xE3069283
    assert tfrecord.crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720 B.4: 32 bytes of zeros


@settings(max_examples=25, deadline=None)
@given(st.binary(min_size=2048, max_size=40000))
def test_crc32c_numpy_path_equals_the_bytewise_definition(data):
    assert tfrecord.crc32c(data) == tfrecord._crc_raw_python(data, 0xFFFFFFFF) ^ 0xFFFFFFFF


TF_INTEROP = textwrap.dedent("""
    import sys, numpy as np, tensorflow as tf
    out = sys.argv[1]
    # 1. TensorFlow reads the file our writer made (its reader checks both CRCs).
    parsed = []
    for raw in tf.data.TFRecordDataset(out + "/ours.tfrecords"):
        ex = tf.train.Example.FromString(raw.numpy())
        f = ex.features.feature
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
    hm = tf.cast(hm, tf.float32)[None]
    hm = tf.image.resize(hm, (64, 64))
    hm = tf.nn.depthwise_conv2d(hm, kernel[:, :, None, None].astype(np.float32), [1, 1, 1, 1], "SAME")
    hm = tf.image.resize(hm, (40, 40))[0, ..., 0].numpy()
    np.savez(out + "/expected.npz", image=decoded, heatmap=hm)
""")


@pytest.fixture(scope="module")
def tf_interop(tmp_path_factory):
    directory = tmp_path_factory.mktemp("interop")
    tfrecord.write_records(directory / "ours.tfrecords", [
        tfrecord.encode_example({"b": b"hello", "i": np.array([-3, 0, 2**40]), "f": np.array([0.5, -1.25])}),
        tfrecord.encode_example({"b": b"x" * 5000, "i": 7, "f": np.zeros(3000, np.float32)}),
    ])
    result = subprocess.run([sys.executable, "-c", TF_INTEROP, str(directory)], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return directory


def test_tensorflow_reads_what_we_write(tf_interop):
    assert (tf_interop / "expected.npz").exists()  # the subprocess asserted the values it parsed


def test_we_read_what_tensorflow_writes(tf_interop):
    (payload,) = list(tfrecord.iter_records(tf_interop / "tf.tfrecords"))
    features = tfrecord.parse_example(payload)
    assert features["label"].tolist() == [417]
    np.testing.assert_array_equal(features["floats"], np.array([1.5, -2.0, 3.25], np.float32))
    assert features["image"][0][:2] == b"\xff\xd8"


def test_jpeg_layout_decodes_and_diffuses_like_tensorflow(tf_interop):
    expected = np.load(tf_interop / "expected.npz")
    stimuli = load_stimuli(str(tf_interop / "tf.tfrecords"))
    assert stimuli.ids == ["tf.tfrecords:0"] and stimuli.labels.tolist() == [417]
    # Pillow and TensorFlow both use libjpeg-turbo: with the accurate integer DCT the pixels agree.
    np.testing.assert_allclose(stimuli.images[0].permute(1, 2, 0).numpy() * 255, expected["image"], atol=1e-3)
    np.testing.assert_allclose(stimuli.heatmaps[0].numpy(), expected["heatmap"], rtol=1e-4, atol=1e-3)


def test_stimulus_layout_round_trips_across_shards(tmp_path):
    images, heatmaps, labels = _write_stimulus_shards(tmp_path)
    stimuli = load_stimuli(str(tmp_path / "stim-*.tfrecords"))
    assert len(stimuli) == 5
    assert stimuli.ids[:4] == ["stim-00000-of-00002.tfrecords:0", "stim-00000-of-00002.tfrecords:1",
                               "stim-00000-of-00002.tfrecords:2", "stim-00001-of-00002.tfrecords:0"]
    assert stimuli.images.dtype == torch.float32 and stimuli.images.shape == (5, 3, 12, 12)
    np.testing.assert_allclose(stimuli.images.permute(0, 2, 3, 1).numpy(), images / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(stimuli.heatmaps.numpy(), heatmaps)
    assert stimuli.labels.dtype == torch.int64 and stimuli.labels.tolist() == labels.tolist()
    limited = load_stimuli(str(tmp_path / "stim-*.tfrecords"), limit=4)
    assert limited.ids == stimuli.ids[:4]


def test_resizing_keeps_image_and_heatmap_aligned():
    mask = torch.zeros(1, 30, 30)
    mask[0, 7:13, 18:27] = 1.0
    stimuli = Stimuli(mask[:, None].repeat(1, 3, 1, 1), torch.tensor([0]), mask.clone(), ["a:0"])
    for size in (17, (45, 38), 64):
        resized = stimuli.resized(size)
        expected = (size, size) if isinstance(size, int) else size
        assert resized.size == expected and tuple(resized.heatmaps.shape[-2:]) == expected
        torch.testing.assert_close(resized.images[:, 0], resized.heatmaps, rtol=0, atol=1e-6)
    # The resampling is torch's antialiased bilinear filter, the same as Pillow's for downsizing.
    from PIL import Image
    pil = np.asarray(Image.fromarray(mask[0].numpy()).resize((17, 17), Image.BILINEAR))
    np.testing.assert_allclose(stimuli.resized(17).heatmaps[0].numpy(), pil, atol=1e-5)


def test_corrupt_input_gets_one_line_errors_naming_file_and_record(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        load_stimuli(str(tmp_path / "nothing-here*.tfrecords"))
    _write_stimulus_shards(tmp_path, n_per_shard=(3,))
    path = tmp_path / "stim-00000-of-00001.tfrecords"
    data = bytearray(path.read_bytes())
    record = len(data) // 3
    data[record + 100] ^= 0x01  # one flipped bit in the second record's payload
    bad = tmp_path / "bad.tfrecords"
    bad.write_bytes(bytes(data))
    with pytest.raises(tfrecord.TFRecordError, match=r"bad\.tfrecords: record 1: bad CRC"):
        load_stimuli(str(bad))
    (tmp_path / "short.tfrecords").write_bytes(bytes(data[: record + 50]))
    with pytest.raises(tfrecord.TFRecordError, match=r"short\.tfrecords: record 1: truncated"):
        load_stimuli(str(tmp_path / "short.tfrecords"))
    tfrecord.write_records(tmp_path / "nolabel.tfrecords", [
        tfrecord.encode_example({"image": np.zeros(12 * 12 * 3, "<f4").tobytes(),
                                 "heatmap": np.zeros(144, "<f4").tobytes()})])
    with pytest.raises(tfrecord.TFRecordError, match=r"nolabel\.tfrecords: record 0: missing feature 'label'"):
        load_stimuli(str(tmp_path / "nolabel.tfrecords"))
    tfrecord.write_records(tmp_path / "shape.tfrecords", [
        _stimulus_record(np.zeros((12, 12, 3)), np.zeros((11, 11, 1)), 3)])
    with pytest.raises(tfrecord.TFRecordError, match=r"shape\.tfrecords: record 0: heatmap: .*12x12"):
        load_stimuli(str(tmp_path / "shape.tfrecords"))
    tfrecord.write_records(tmp_path / "odd.tfrecords", [
        tfrecord.encode_example({"image": b"\x00" * 12 * 10, "heatmap": b"", "label": 1})])
    with pytest.raises(tfrecord.TFRecordError, match=r"odd\.tfrecords: record 0: image: .*square"):
        load_stimuli(str(tmp_path / "odd.tfrecords"))
