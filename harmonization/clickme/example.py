"""``tf.train.Example`` records without TensorFlow: encode from and parse into numpy.

An Example is the protobuf message ``Example{features: Features{map<string, Feature> feature}}``
whose ``Feature`` holds one of a ``BytesList``, ``FloatList`` (float32) or ``Int64List``; this
module reads and writes that wire format directly.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from harmonization.clickme.errors import ClickMeDataError

FeatureValue = list[bytes] | np.ndarray
"""A parsed feature: a list of bytes values, a float32 array or an int64 array."""


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ClickMeDataError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ClickMeDataError("varint longer than 10 bytes")


def _fields(buf: memoryview) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) of a message; length-delimited values are memoryviews."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + size], pos + size
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ClickMeDataError(f"unsupported protobuf wire type {wire}")
        if pos > len(buf):
            raise ClickMeDataError("truncated protobuf field")
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
                    if len(v) % 4:
                        raise ClickMeDataError(f"a float list of {len(v)} bytes (not whole float32 values)")
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
    int64 array. Raises ClickMeDataError on a malformed message.
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
                raise ClickMeDataError("feature map entry without a key")
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
