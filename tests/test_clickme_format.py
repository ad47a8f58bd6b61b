"""The TF-free ClickMe format package: CRC-32C, framing, Example codec, path rule, record checks, writer."""

import os
import stat
import struct
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harmonization import clickme
from harmonization.clickme import crc32c as crc
from harmonization.clickme.layout import PROBLEMS
from harmonization.files import OutputError

SIZE = 12


def raw_record(image, heatmap, label=1):
    return clickme.encode_example(
        {
            "image": np.asarray(image, "<f4").tobytes(),
            "heatmap": np.asarray(heatmap, "<f4").tobytes(),
            "label": np.int64(label),
        }
    )


def good_image():
    return np.random.default_rng(0).uniform(20, 230, (SIZE, SIZE, 3))


def test_importing_the_format_loads_neither_tensorflow_nor_torch():
    code = (
        "import sys, harmonization.clickme; "
        "print(sorted(m for m in ('tensorflow', 'torch', 'keras') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


def test_crc32c_matches_the_published_check_values():
    # RFC 3720 (iSCSI) B.4 / the CRC catalogue: CRC-32C("123456789") = 0xE3069283; 32 zero bytes.
    assert crc.crc32c(b"123456789") == 0xE3069283
    assert crc.crc32c(bytes(32)) == 0x8A9136AA


@settings(max_examples=25, deadline=None)
@given(st.binary(min_size=2048, max_size=40000))
def test_crc32c_numpy_path_equals_the_bytewise_definition(data):
    assert crc.crc32c(data) == crc._crc_raw_python(data, 0xFFFFFFFF) ^ 0xFFFFFFFF


def test_crc32c_of_a_stimulus_sized_payload_equals_the_bytewise_definition():
    data = np.random.default_rng(0).integers(0, 256, 224 * 224 * 12 + 5, dtype=np.uint8).tobytes()
    assert crc.crc32c(data) == crc._crc_raw_python(data, 0xFFFFFFFF) ^ 0xFFFFFFFF


@pytest.mark.compat
def test_example_codec_round_trips_every_feature_kind():
    payload = clickme.encode_example(
        {"b": [b"x", b"yz"], "i": np.array([-3, 0, 2**40]), "f": np.array([0.5, -1.25]), "s": "text"}
    )
    parsed = clickme.parse_example(payload)
    assert parsed["b"] == [b"x", b"yz"] and parsed["s"] == [b"text"]
    assert parsed["i"].dtype == np.int64 and parsed["i"].tolist() == [-3, 0, 2**40]
    assert parsed["f"].dtype == np.float32 and parsed["f"].tolist() == [0.5, -1.25]


@pytest.mark.compat
def test_framing_round_trips_and_the_scan_counts_records(tmp_path):
    payloads = [b"a", b"hello" * 1000, b""]
    clickme.write_records(tmp_path / "x.tfrecords", payloads)
    assert list(clickme.iter_records(tmp_path / "x.tfrecords")) == payloads
    index = clickme.scan_headers(tmp_path / "x.tfrecords")
    assert (index.count, index.readable, index.error) == (3, 3, None)
    assert index.offsets == (0, 17, 17 + 16 + 5000)


def _huge_header(path, length=2**40):
    header = struct.pack("<Q", length)
    path.write_bytes(header + struct.pack("<I", crc.masked_crc32c(header)) + b"x" * 20)


def test_a_huge_length_with_a_valid_crc_is_refused_before_allocating(tmp_path):
    clickme.write_records(tmp_path / "h.tfrecords", [b"first"])
    good = (tmp_path / "h.tfrecords").read_bytes()
    _huge_header(tmp_path / "tail.tfrecords")
    (tmp_path / "h.tfrecords").write_bytes(good + (tmp_path / "tail.tfrecords").read_bytes())
    path = str(tmp_path / "h.tfrecords")
    with pytest.raises(clickme.ClickMeDataError) as error:
        list(clickme.iter_records(path))
    message = str(error.value)
    assert message.startswith(f"{path}: record 1 is truncated (its header claims 1099511627776 bytes, 20 follow it")
    assert "\n" not in message
    index = clickme.scan_headers(path)
    assert (index.readable, index.count) == (1, 2) and "claims 1099511627776 bytes" in index.error


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda data, second: data[: second + 6], "record 1 is truncated (header cut"),
        (lambda data, second: data[: second + 20], "record 1 is truncated (its header claims"),
        (
            lambda data, second: data[: second + 1] + bytes([data[second + 1] ^ 0x10]) + data[second + 2 :],
            "record 1 has a corrupt length header",
        ),
        (
            lambda data, second: data[: second + 14] + bytes([data[second + 14] ^ 0x01]) + data[second + 15 :],
            "record 1 is corrupt (its data checksum does not match",
        ),
    ],
)
def test_damaged_frames_are_named_with_file_and_record(tmp_path, damage, message):
    clickme.write_records(tmp_path / "ok.tfrecords", [b"p" * 30, b"q" * 30, b"r" * 30])
    data = (tmp_path / "ok.tfrecords").read_bytes()
    bad = tmp_path / "bad.tfrecords"
    bad.write_bytes(damage(data, 46))
    with pytest.raises(clickme.ClickMeDataError, match=f"^{bad}: ") as error:
        list(clickme.iter_records(bad))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_one_path_rule_files_folders_globs_and_lists(tmp_path):
    for name in ("b.tfrecords", "a.tfrecords", "c.tfrecord-00001", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    folder = [str(tmp_path / n) for n in ("a.tfrecords", "b.tfrecords", "c.tfrecord-00001")]
    assert clickme.resolve_shards(tmp_path, "shard") == folder
    assert clickme.resolve_shards(str(tmp_path / "*.tfrecords"), "shard") == folder[:2]
    assert clickme.resolve_shards([folder[1], str(tmp_path / "?.tfrecords")], "shard") == [folder[1], folder[0]]


@pytest.mark.parametrize(
    "item, message",
    [
        ("missing.tfrecords", r"no stimulus file at '.*missing\.tfrecords' \(no such file or directory\)"),
        ("none-*.tfrecords", r"no stimulus file matches '.*none-\*\.tfrecords'"),
        ("empty", r"no stimulus file in directory '.*empty' \(it holds no \*\.tfrecord\* file\)"),
    ],
)
def test_the_path_rule_refuses_in_one_line(tmp_path, item, message):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=message) as error:
        clickme.resolve_shards(str(tmp_path / item), "stimulus file")
    assert "\n" not in str(error.value)
    with pytest.raises(FileNotFoundError, match="no stimulus file given"):
        clickme.resolve_shards([], "stimulus file")


BAD = {
    "label range": (raw_record(good_image(), np.ones((SIZE, SIZE)), label=9), "label 9 is outside [0, 4)"),
    "negative label": (raw_record(good_image(), np.ones((SIZE, SIZE)), label=-1), "label -1 is outside [0, 4)"),
    "map size": (raw_record(good_image(), np.ones((SIZE - 2, SIZE - 2))), "heatmap 10x10 does not match image 12x12"),
    "negative map": (raw_record(good_image(), -np.ones((SIZE, SIZE))), "heatmap holds negative values"),
    "value range": (raw_record(good_image() * 2, np.ones((SIZE, SIZE))), "image values lie outside [0, 255]"),
    "nan image": (raw_record(np.full((SIZE, SIZE, 3), np.nan), np.ones((SIZE, SIZE))), "image holds non-finite values"),
    "nan map": (raw_record(good_image(), np.full((SIZE, SIZE), np.nan)), "heatmap holds non-finite values"),
    "missing map": (
        clickme.encode_example({"image": b"\xff\xd8 not really", "label": np.int64(0)}),
        "missing key 'heatmap'",
    ),
    "not an image": (
        clickme.encode_example({"image": b"hello", "heatmap": b"", "label": np.int64(0)}),
        "'image' is neither a JPEG or raw float32 bytes of a square HxWx3 image (5 bytes)",
    ),
    "undecodable jpeg": (
        clickme.encode_example(
            {
                "image": b"\xff\xd8\xff\xe0" + b"garbage" * 20,
                "heatmap": np.zeros(SIZE * SIZE, "<f4").tobytes(),
                "label": np.int64(0),
            }
        ),
        PROBLEMS["undecodable"],
    ),
    "not a protobuf": (b"\xff" * 7, PROBLEMS["undecodable"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_every_record_check_names_file_and_record(tmp_path, case):
    payload, what = BAD[case]
    path = tmp_path / "bad.tfrecords"
    clickme.write_records(path, [raw_record(good_image(), np.ones((SIZE, SIZE))), payload])
    with pytest.raises(clickme.ClickMeDataError) as error:
        list(clickme.iter_clickme(path, num_classes=4))
    assert str(error.value) == f"bad ClickMe record: {path} record 1: {what}"


def test_without_num_classes_labels_need_only_be_non_negative(tmp_path):
    path = tmp_path / "labels.tfrecords"
    clickme.write_records(path, [raw_record(good_image(), np.ones((SIZE, SIZE)), label=999)])
    assert [r.label for r in clickme.iter_clickme(path)] == [999]
    clickme.write_records(path, [raw_record(good_image(), np.ones((SIZE, SIZE)), label=-3)])
    with pytest.raises(clickme.ClickMeDataError, match="record 0: label -3 is negative"):
        list(clickme.iter_clickme(path))


def test_both_layouts_decode_to_the_written_arrays(tmp_path):
    rng = np.random.default_rng(3)
    image = rng.uniform(0, 255, (SIZE, SIZE, 3)).astype(np.float32)
    heatmap = rng.uniform(0, 2, (SIZE, SIZE)).astype(np.float32)
    stimulus = clickme.write_clickme(
        [{"image": image, "heatmap": heatmap, "label": 3}], tmp_path, layout="stimulus", prefix="s"
    )
    (record,) = clickme.iter_clickme(stimulus[0], num_classes=4)
    np.testing.assert_array_equal(record.image, image)
    np.testing.assert_array_equal(record.heatmap, heatmap)
    assert record.label == 3 and not record.clicks
    flat = {"image": np.full((SIZE, SIZE, 3), 90, np.uint8), "heatmap": np.full((SIZE, SIZE), 40, np.uint8), "label": 2}
    jpeg = clickme.write_clickme([flat], tmp_path, prefix="j")
    (record,) = clickme.iter_clickme(jpeg[0])
    np.testing.assert_array_equal(record.image, 90.0)  # a flat JPEG decodes exactly
    np.testing.assert_array_equal(record.heatmap, 40.0)  # uint8 clicks are stored as they are
    assert record.clicks and record.label == 2


def test_the_unit_range_warning():
    assert clickme.unit_range_warning(255.0, "x") is None and clickme.unit_range_warning(1.5, "x") is None
    assert clickme.unit_range_warning(1.0, "set.tfrecords").startswith("set.tfrecords: the brightest pixel is 1:")


def _examples(count, value=100):
    return [
        {"image": np.full((SIZE, SIZE, 3), value, np.uint8), "heatmap": np.full((SIZE, SIZE), 30, np.uint8), "label": i}
        for i in range(count)
    ]


def test_the_writer_shards_renames_and_follows_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        paths = clickme.write_clickme(_examples(5), tmp_path, shard_size=2, prefix="p")
    finally:
        os.umask(old)
    assert [os.path.basename(p) for p in paths] == [f"p-{i:05d}-of-00003.tfrecords" for i in range(3)]
    assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(p) for p in paths)
    assert all(stat.S_IMODE(os.stat(p).st_mode) == 0o640 for p in paths)
    assert [r.label for p in paths for r in clickme.iter_clickme(p)] == [0, 1, 2, 3, 4]


def test_a_failed_write_keeps_the_older_set_whole(tmp_path, monkeypatch):
    before = clickme.write_clickme(_examples(3), tmp_path, shard_size=2, prefix="p")
    contents = {p: open(p, "rb").read() for p in before}
    with pytest.raises(ValueError, match="example 3: label must be an integer"):
        clickme.write_clickme(_examples(3) + [dict(_examples(1)[0], label="x")], tmp_path, shard_size=2, prefix="p")
    calls = []

    def full_disk(payload):
        calls.append(payload)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return b"frame"

    monkeypatch.setattr("harmonization.clickme.writer.frame_record", full_disk)
    with pytest.raises(OutputError) as error:
        clickme.write_clickme(_examples(6, value=7), tmp_path, shard_size=2, prefix="p")
    assert str(error.value) == f"cannot write {tmp_path / 'p-*.tfrecords'}: No space left on device"
    assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(p) for p in before)
    assert {p: open(p, "rb").read() for p in before} == contents
