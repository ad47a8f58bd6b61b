"""TFRecord files and ``tf.train.Example`` records without TensorFlow.

A TFRecord file is a sequence of frames: uint64 little-endian length, masked CRC-32C of those
8 bytes, the payload, masked CRC-32C of the payload. A ``tf.train.Example`` is a protobuf message
``Example{features: Features{map<string, Feature> feature}}`` whose ``Feature`` holds one of a
``BytesList``, ``FloatList`` (float32) or ``Int64List``; this module reads and writes that wire
format directly, so the attack process never imports TensorFlow.

CRC-32C (Castagnoli) of large payloads is computed with numpy: the payload is cut into equal
chunks whose CRCs advance in parallel, then combined with the GF(2) operators that append zeros.
"""
from __future__ import annotations

import functools
import os
import struct
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, BinaryIO

import numpy as np

_POLY = 0x82F63B78  # CRC-32C, reflected
_MASK_DELTA = 0xA282EAD8
_VECTOR_THRESHOLD = 2048  # payloads at least this long take the numpy path

FeatureValue = list[bytes] | np.ndarray
"""A parsed feature: a list of bytes values, a float32 array or an int64 array."""


class TFRecordError(ValueError):
    """A TFRecord file or one of its Example records is malformed."""


def _byte_table() -> np.ndarray:
    table = np.zeros(256, dtype=np.uint32)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ _POLY if c & 1 else c >> 1
        table[i] = c
    return table


_TABLE = _byte_table()
_TABLE_LIST = [int(v) for v in _TABLE]
_BITS = ((np.arange(256, dtype=np.uint32)[:, None] >> np.arange(8, dtype=np.uint32)) & 1).astype(bool)


def _crc_raw_python(data: bytes | memoryview, state: int = 0) -> int:
    table = _TABLE_LIST
    for byte in bytes(data):
        state = table[(state ^ byte) & 0xFF] ^ (state >> 8)
    return state


class _Operator:
    """A linear map of the 32-bit CRC state over GF(2), applied through four byte tables."""

    def __init__(self, columns: np.ndarray):
        self.columns = columns.astype(np.uint32)  # columns[i] = image of the state 1 << i
        self.tables = [
            np.bitwise_xor.reduce(np.where(_BITS, self.columns[8 * j: 8 * j + 8], 0), axis=1).astype(np.uint32)
            for j in range(4)
        ]

    def __call__(self, state: np.ndarray) -> np.ndarray:
        t0, t1, t2, t3 = self.tables
        return t0[state & 0xFF] ^ t1[(state >> 8) & 0xFF] ^ t2[(state >> 16) & 0xFF] ^ t3[state >> 24]

    def then(self, other: "_Operator") -> "_Operator":
        """The operator applying ``self`` first, then ``other``."""
        return _Operator(other(self.columns))


@functools.lru_cache(maxsize=256)
def _zeros_operator(n_bytes: int) -> _Operator:
    """The map of the raw CRC state through ``n_bytes`` zero bytes (exponentiation by squaring)."""
    basis = np.left_shift(np.uint32(1), np.arange(32, dtype=np.uint32))
    step = _Operator(_TABLE[basis & 0xFF] ^ (basis >> 8))
    result = None
    while n_bytes:
        if n_bytes & 1:
            result = step if result is None else result.then(step)
        n_bytes >>= 1
        if n_bytes:
            step = step.then(step)
    return result if result is not None else _Operator(basis)


def _crc_raw_numpy(data: np.ndarray) -> int:
    """Raw CRC (state starting at 0, no final xor) of a uint8 array, chunked over numpy lanes."""
    n = data.size
    lanes = 1 << max(6, min(13, int(np.log2(max(n, 1))) // 2 + 1))
    chunk = -(-n // lanes)
    padded = np.zeros(lanes * chunk, dtype=np.uint8)
    padded[lanes * chunk - n:] = data  # leading zeros leave a zero raw state unchanged
    columns = np.ascontiguousarray(padded.reshape(lanes, chunk).T)
    state = np.zeros(lanes, dtype=np.uint32)
    for column in columns:
        state = _TABLE[(state ^ column) & 0xFF] ^ (state >> 8)
    length = chunk
    while state.size > 1:
        state = _zeros_operator(length)(state[0::2]) ^ state[1::2]
        length *= 2
    return int(state[0])


def crc32c(data: bytes | bytearray | memoryview) -> int:
    """CRC-32C (Castagnoli) of ``data``, as used by TFRecord framing."""
    view = memoryview(data).cast("B")
    if len(view) < _VECTOR_THRESHOLD:
        return _crc_raw_python(view, 0xFFFFFFFF) ^ 0xFFFFFFFF
    array = np.frombuffer(view, dtype=np.uint8).copy()
    array[:4] ^= 0xFF  # an initial state of ~0 equals complementing the first four bytes
    return _crc_raw_numpy(array) ^ 0xFFFFFFFF


def masked_crc32c(data: bytes | bytearray | memoryview) -> int:
    """TFRecord's masked CRC-32C: rotate right by 15 bits, add a constant, modulo 2**32."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def _read_exact(handle: BinaryIO, size: int, path: str, index: int, what: str) -> bytes:
    data = handle.read(size)
    if len(data) != size:
        raise TFRecordError(f"{path}: record {index}: truncated {what} ({len(data)} of {size} bytes)")
    return data


def iter_records(path: str | os.PathLike, verify: bool = True) -> Iterator[bytes]:
    """Yield the payload of every record of a TFRecord file, checking both CRCs when ``verify``."""
    path = os.fspath(path)
    with open(path, "rb") as handle:
        index = 0
        while True:
            header = handle.read(8)
            if not header:
                return
            if len(header) != 8:
                raise TFRecordError(f"{path}: record {index}: truncated length ({len(header)} of 8 bytes)")
            (length_crc,) = struct.unpack("<I", _read_exact(handle, 4, path, index, "length CRC"))
            if verify and masked_crc32c(header) != length_crc:
                raise TFRecordError(f"{path}: record {index}: bad CRC of the length field (not a TFRecord file?)")
            (length,) = struct.unpack("<Q", header)
            payload = _read_exact(handle, length, path, index, "payload")
            (payload_crc,) = struct.unpack("<I", _read_exact(handle, 4, path, index, "payload CRC"))
            if verify and masked_crc32c(payload) != payload_crc:
                raise TFRecordError(f"{path}: record {index}: bad CRC of the payload (corrupt file)")
            yield payload
            index += 1


def frame_record(payload: bytes) -> bytes:
    """One TFRecord frame (length, CRCs and payload) holding ``payload``."""
    header = struct.pack("<Q", len(payload))
    return header + struct.pack("<I", masked_crc32c(header)) + payload + struct.pack("<I", masked_crc32c(payload))


def write_records(path: str | os.PathLike, payloads: Iterable[bytes]) -> None:
    """Write payloads as a TFRecord file, atomically (a temporary file renamed into place)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".tfrecords")
    try:
        with os.fdopen(fd, "wb") as handle:
            for payload in payloads:
                handle.write(frame_record(payload))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# --- protobuf wire format -------------------------------------------------------------------

def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise TFRecordError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise TFRecordError("varint longer than 10 bytes")


def _fields(buf: memoryview) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) of a message; length-delimited values are memoryviews."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + size], pos + size
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise TFRecordError(f"unsupported protobuf wire type {wire}")
        if pos > len(buf):
            raise TFRecordError("truncated protobuf field")
        yield number, wire, value


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _parse_feature(buf: memoryview) -> FeatureValue:
    for number, wire, value in _fields(buf):
        if wire != 2:
            continue
        if number == 1:  # BytesList
            return [bytes(v) for n, w, v in _fields(value) if n == 1 and w == 2]
        if number == 2:  # FloatList
            parts = []
            for n, w, v in _fields(value):
                if n == 1 and w in (2, 5):
                    parts.append(np.frombuffer(v, dtype="<f4"))
            return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)
        if number == 3:  # Int64List
            ints = []
            for n, w, v in _fields(value):
                if n == 1 and w == 0:
                    ints.append(_signed64(v))
                elif n == 1 and w == 2:
                    pos = 0
                    while pos < len(v):
                        item, pos = _varint(v, pos)
                        ints.append(_signed64(item))
            return np.array(ints, dtype=np.int64)
    return []


def parse_example(payload: bytes | memoryview) -> dict[str, FeatureValue]:
    """Decode a serialized ``tf.train.Example`` into {feature name: values}.

    Bytes features give a list of ``bytes``, float features a float32 array, int64 features an
    int64 array. Raises TFRecordError on a malformed message.
    """
    features: dict[str, FeatureValue] = {}
    for number, wire, value in _fields(memoryview(payload).cast("B")):
        if number != 1 or wire != 2:
            continue
        for entry_number, entry_wire, entry in _fields(value):
            if entry_number != 1 or entry_wire != 2:
                continue
            key, feature = None, memoryview(b"")
            for n, w, v in _fields(entry):
                if n == 1 and w == 2:
                    key = bytes(v).decode("utf-8")
                elif n == 2 and w == 2:
                    feature = v
            if key is None:
                raise TFRecordError("feature map entry without a key")
            features[key] = _parse_feature(feature)
    return features


def _encode_varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _delimited(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | 2) + _encode_varint(len(payload)) + payload


def _encode_feature(name: str, value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray, str)):
        value = [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, (bytes, bytearray, str)) for v in value) and value:
        items = b"".join(_delimited(1, v.encode() if isinstance(v, str) else bytes(v)) for v in value)
        return _delimited(1, items)
    array = np.asarray(value)
    if array.dtype.kind in "iub":
        packed = b"".join(_encode_varint(int(v)) for v in array.ravel())
        return _delimited(3, _delimited(1, packed))
    if array.dtype.kind == "f":
        return _delimited(2, _delimited(1, array.astype("<f4").tobytes()))
    raise TypeError(f"feature {name!r}: cannot encode values of type {type(value).__name__}")


def encode_example(features: Mapping[str, Any]) -> bytes:
    """Serialize {name: value} as a ``tf.train.Example``.

    bytes/str (or a list of them) -> BytesList, integer scalars/arrays -> Int64List,
    float scalars/arrays -> FloatList (float32).
    """
    entries = b"".join(
        _delimited(1, _delimited(1, name.encode("utf-8")) + _delimited(2, _encode_feature(name, value)))
        for name, value in features.items()
    )
    return _delimited(1, entries)
