"""Check TFRecord shards before TensorFlow reads them: the header walk of ``harmonization.clickme``,
then TensorFlow's fast reader over every data checksum.

A damaged shard is reported with its file name and record index before training starts instead
of mid-epoch as a bare ``corrupted record at <offset>`` (and a hostile length header, which crashes
TensorFlow's reader, never reaches it).
"""

from __future__ import annotations

import bisect
import os
import re

import tensorflow as tf

from harmonization.clickme.tfrecord import ShardIndex, corrupt_payload, scan_headers


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
        return ShardIndex(index.path, index.count, bad, index.offsets, corrupt_payload(bad, offset))
    return index


_SCANS: dict[tuple, ShardIndex] = {}


def scan_shard(path: str, check_data: bool = True) -> ShardIndex:
    """Count and check the records of one TFRecord shard (cached per path, size and mtime)."""
    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns, check_data)
    if key not in _SCANS:
        index = scan_headers(path)
        _SCANS[key] = _check_payloads(index) if check_data else index
    return _SCANS[key]
