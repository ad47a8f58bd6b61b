"""The guarded record stream under ``load_clickme``: shards scanned before TensorFlow reads them,
records read in parallel with their file and index, decoded with a problem text instead of a raise,
then stopped at or skipped and counted (``SkipCounter``); ``describe_data_error`` finds the one-line
"bad ... record" text inside the TensorFlow error that stops iteration.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable

import tensorflow as tf

from harmonization.clickme import ClickMeDataError
from harmonization.clickme.errors import RECORD_PREFIX
from harmonization.clickme.layout import PROBLEMS
from harmonization.clickme.tfrecord import ShardIndex
from harmonization.data.shards import scan_shard

LOGGER = logging.getLogger("harmonization.data")
AUTOTUNE = tf.data.AUTOTUNE
_READ_BUFFER = 8 * 1024 * 1024
_MAX_PARALLEL_FILES = 16
SOURCES = ("ClickMe", "ImageNet-style")
_PREFIXES = "|".join(re.escape(RECORD_PREFIX.format(source=source)) for source in SOURCES)
_ERROR_PATTERN = re.compile(rf"((?:{_PREFIXES})[^\n]*?)\](?:\s*\n|\s*$)")


class SkipCounter:
    """How many records ``skip_corrupt=True`` skipped: damaged shard tails found when the dataset
    was built plus bad records met while iterating (counted again in every epoch that meets them).

    Each skipped record is also logged (shard-level ones through ``logging``, the others on stderr).
    """

    def __init__(self) -> None:
        self.in_shards = 0
        self._in_records = tf.Variable(0, dtype=tf.int64, trainable=False, name="skipped_records")

    @property
    def count(self) -> int:
        """Records skipped so far."""
        return self.in_shards + int(self._in_records.numpy())

    def record_skip(self, message: tf.Tensor) -> tf.Tensor:
        """Graph side: count one skipped record and log ``message``; returns False (drop it)."""
        with tf.control_dependencies(
            [self._in_records.assign_add(1), tf.print("harmonization.data: skipped", message, output_stream=sys.stderr)]
        ):
            return tf.constant(False)

    def __repr__(self) -> str:
        return f"SkipCounter(count={self.count})"


def describe_data_error(error: BaseException) -> str | None:
    """The one-line 'bad ... record: FILE record I: WHAT' inside a TensorFlow error, or None."""
    match = _ERROR_PATTERN.search(str(error))
    if match is None:
        return None
    return match.group(1).replace("\\'", "'").replace('\\"', '"')  # TensorFlow escapes quotes


def scan_readable(paths: list[str], skip_corrupt: bool, check_data: bool, counter: SkipCounter) -> list[ShardIndex]:
    """The scan of each shard; a damaged one raises unless ``skip_corrupt`` (then its readable
    records are kept and the rest counted)."""
    counts = []
    for path in paths:
        index = scan_shard(path, check_data=check_data)
        if index.error is not None:
            if not skip_corrupt:
                raise ClickMeDataError(f"{path}: {index.error} (skip_corrupt=True skips it)")
            lost = index.count - index.readable
            counter.in_shards += lost
            LOGGER.warning("skipping %d record(s) of %s: %s (TFRecord cannot resume after it)", lost, path, index.error)
        counts.append(index)
    return counts


def read_records(paths: list[str], takes: list[int], sequential: bool, end_shard_on_damage: bool) -> tf.data.Dataset:
    """(path, index in its shard, serialized record) in file order, shards read in parallel unless
    ``sequential``.

    ``end_shard_on_damage``: a shard whose data checksums were not verified ends at a damaged record
    (TensorFlow logs it) instead of stopping the run.
    """
    files = tf.data.Dataset.from_tensor_slices((paths, tf.constant(takes, tf.int64)))

    def read(path: tf.Tensor, take: tf.Tensor) -> tf.data.Dataset:
        records = tf.data.TFRecordDataset(path, buffer_size=_READ_BUFFER).take(take)
        if end_shard_on_damage:
            records = records.ignore_errors(log_warning=True)
        return records.enumerate().map(lambda index, record: (path, index, record))

    if sequential:
        return files.flat_map(read)
    return files.interleave(
        read, cycle_length=min(len(paths), _MAX_PARALLEL_FILES), block_length=1, num_parallel_calls=AUTOTUNE
    )


def decode_guarded(records: tf.data.Dataset, decode: Callable, num_classes: int) -> tf.data.Dataset:
    """Decode each record (path, index, record, *extra) with ``decode(record, num_classes, *extra)``
    into (path, index, problem, image, heatmap, label, clicks, *extra); one that makes TensorFlow
    raise becomes an element with a problem text."""
    undecodable = PROBLEMS["undecodable"]

    def guarded(path: tf.Tensor, index: tf.Tensor, record: tf.Tensor, *extra) -> tf.data.Dataset:
        decoded = tf.data.Dataset.from_tensors(record).map(lambda r: decode(r, num_classes, *extra)).ignore_errors()
        fallback = tf.data.Dataset.from_tensors(
            (
                tf.constant(undecodable),
                tf.zeros([0, 0, 3]),
                tf.zeros([0, 0, 1]),
                tf.constant(-1, tf.int64),
                tf.constant(False),
            )
        )
        return decoded.concatenate(fallback).take(1).map(lambda *item: (path, index) + item + extra)

    return records.interleave(guarded, cycle_length=_MAX_PARALLEL_FILES, block_length=1, num_parallel_calls=AUTOTUNE)


def enforce(
    decoded: tf.data.Dataset, source: str | Callable, skip_corrupt: bool, counter: SkipCounter
) -> tf.data.Dataset:
    """Stop at (or, with skip_corrupt, skip and count) each record whose problem text is not empty.
    ``source``: the records' kind ("ClickMe"), or a function of the example giving its prefix."""

    def message(path: tf.Tensor, index: tf.Tensor, problem: tf.Tensor, example: tuple) -> tf.Tensor:
        prefix = RECORD_PREFIX.format(source=source) if isinstance(source, str) else source(example)
        return tf.strings.join([prefix, path, " record ", tf.strings.as_string(index), ": ", problem])

    if skip_corrupt:

        def keep(path, index, problem, *example):
            return tf.cond(
                problem == "",
                lambda: tf.constant(True),
                lambda: counter.record_skip(message(path, index, problem, example)),
            )

        checked = decoded.filter(keep)
    else:

        def check(path, index, problem, *example):
            assertion = tf.debugging.Assert(problem == "", [message(path, index, problem, example)])
            with tf.control_dependencies([assertion]):
                return (path, index, tf.identity(problem), *example)

        checked = decoded.map(check)
    return checked.map(lambda path, index, problem, *example: example)
