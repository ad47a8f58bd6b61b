"""TFRecord shard files: resolve paths and globs, count records, find truncation and corruption.

A TFRecord file is a sequence of ``uint64 length | uint32 masked_crc32c(length) | data |
uint32 masked_crc32c(data)`` frames. :func:`scan_shard` walks the length headers in Python (cheap:
12 bytes read per record) to count the records, locate each one and find a truncated or corrupt
header, and, with ``check_data``, lets TensorFlow's reader verify every data checksum once, so a
damaged shard is reported with its file name and record index before training starts instead of
mid-epoch as a bare ``corrupted record at <offset>``.
"""
from __future__ import annotations

import bisect
import glob
import os
import re
import struct
from dataclasses import dataclass, field
from typing import Iterable

import tensorflow as tf


class ClickMeDataError(ValueError):
    """Bad input data: a message naming the file (and record, where there is one)."""


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of ``data``; pure Python, meant for the 8-byte length headers."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """The masked CRC-32C that TFRecord files store after each length and each payload."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


@dataclass(frozen=True)
class ShardIndex:
    """What a scan found in one shard.

    ``readable`` records (the first ones, in file order) can be read; ``count`` is the number of
    records the file holds or claims to hold; ``error`` describes the first damaged record
    (index ``readable``) or is None.
    """

    path: str
    count: int
    readable: int
    offsets: tuple[int, ...] = field(repr=False)
    error: str | None = None


def resolve_paths(paths_or_glob: str | os.PathLike | Iterable[str | os.PathLike], what: str) -> list[str]:
    """Expand a path, a directory (its ``*.tfrecord*`` files), a glob, or a list of them, sorted.

    Raises FileNotFoundError naming the pattern when a path is missing or a glob matches nothing.
    """
    items = [paths_or_glob] if isinstance(paths_or_glob, (str, os.PathLike)) else list(paths_or_glob)
    if not items:
        raise FileNotFoundError(f"{what}: no shard path given")
    found: list[str] = []
    for item in items:
        item = os.fspath(item)
        if os.path.isdir(item):
            matches = sorted(glob.glob(os.path.join(item, "*.tfrecord*")))
            if not matches:
                raise FileNotFoundError(f"{what}: directory {item!r} holds no *.tfrecord* file")
        elif glob.has_magic(item):
            matches = sorted(p for p in glob.glob(item) if os.path.isfile(p))
            if not matches:
                raise FileNotFoundError(f"{what}: no file matches {item!r}")
        elif os.path.isfile(item):
            matches = [item]
        else:
            raise FileNotFoundError(f"{what}: no such file {item!r}")
        found.extend(matches)
    return list(dict.fromkeys(found))


def _scan_headers(path: str) -> ShardIndex:
    size = os.path.getsize(path)
    offsets: list[int] = []
    with open(path, "rb") as handle:
        offset = 0
        while offset < size:
            index = len(offsets)
            header = handle.read(12)
            if len(header) < 12:
                error = f"record {index} is truncated (header cut at byte {size})"
                return ShardIndex(path, index + 1, index, tuple(offsets), error)
            (length,) = struct.unpack("<Q", header[:8])
            (stored_crc,) = struct.unpack("<I", header[8:])
            if masked_crc32c(header[:8]) != stored_crc:
                error = f"record {index} has a corrupt length header at byte {offset}"
                return ShardIndex(path, index + 1, index, tuple(offsets), error)
            end = offset + 12 + length + 4
            if end > size:
                error = f"record {index} is truncated (needs {end} bytes, the file has {size})"
                return ShardIndex(path, index + 1, index, tuple(offsets), error)
            offsets.append(offset)
            handle.seek(length + 4, os.SEEK_CUR)
            offset = end
    return ShardIndex(path, len(offsets), len(offsets), tuple(offsets))


def _check_payloads(index: ShardIndex) -> ShardIndex:
    """Let TensorFlow's reader verify the data checksums of the readable records."""
    if index.readable == 0:
        return index
    dataset = tf.data.TFRecordDataset(index.path).take(index.readable)
    try:
        dataset.reduce(tf.constant(0, tf.int64), lambda count, _: count + 1)
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as error:
        match = re.search(r"record at (\d+)", error.message)
        offset = int(match.group(1)) if match else 0
        bad = max(bisect.bisect_right(index.offsets, offset) - 1, 0)  # the record holding that byte
        message = f"record {bad} is corrupt (its data checksum does not match, byte {offset})"
        return ShardIndex(index.path, index.count, bad, index.offsets, message)
    return index


_SCANS: dict[tuple, ShardIndex] = {}


def scan_shard(path: str, check_data: bool = True) -> ShardIndex:
    """Count and check the records of one TFRecord shard (cached per path, size and mtime)."""
    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns, check_data)
    if key not in _SCANS:
        index = _scan_headers(path)
        _SCANS[key] = _check_payloads(index) if check_data else index
    return _SCANS[key]
