"""``load_clickme``: ClickMe TFRecord shards -> a ``tf.data.Dataset`` of training/eval batches.

Batches follow docs/data-contracts.md: ``image`` float32 (N, S, S, 3) in [0, 255],
``heatmap`` float32 (N, S, S, 1) (diffused), ``label`` int64 (N,), ``token`` float32 (N,).
"""
from __future__ import annotations

import logging
import re
import sys
from typing import Callable

import tensorflow as tf

from harmonization.clickme import ClickMeDataError, ShardPaths, resolve_shards
from harmonization.clickme.errors import RECORD_PREFIX
from harmonization.clickme.layout import PROBLEMS
from harmonization.clickme.reader import warn_if_unit_range
from harmonization.data.augment import center_crop, random_crop_flip, resize_pair
from harmonization.data.diffusion import diffuse_heatmaps
from harmonization.data.records import decode_clickme, decode_imagenet
from harmonization.data.shards import scan_shard
from harmonization.inputs.core import check_arguments

LOGGER = logging.getLogger("harmonization.data")
AUTOTUNE = tf.data.AUTOTUNE
_READ_BUFFER = 8 * 1024 * 1024
_MAX_PARALLEL_FILES = 16
_SOURCES = ("ClickMe", "ImageNet-style")
_PREFIXES = "|".join(re.escape(RECORD_PREFIX.format(source=source)) for source in _SOURCES)
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
        with tf.control_dependencies([self._in_records.assign_add(1),
                                      tf.print("harmonization.data: skipped", message, output_stream=sys.stderr)]):
            return tf.constant(False)

    def __repr__(self) -> str:
        return f"SkipCounter(count={self.count})"


def describe_data_error(error: BaseException) -> str | None:
    """The one-line 'bad ... record: FILE record I: WHAT' inside a TensorFlow error, or None."""
    match = _ERROR_PATTERN.search(str(error))
    if match is None:
        return None
    return match.group(1).replace("\\'", "'").replace('\\"', '"')  # TensorFlow escapes quotes


def _readable_counts(paths: list[str], skip_corrupt: bool, check_data: bool, counter: SkipCounter) -> list[int]:
    counts = []
    for path in paths:
        index = scan_shard(path, check_data=check_data)
        if index.error is not None:
            if not skip_corrupt:
                raise ClickMeDataError(f"{path}: {index.error} (skip_corrupt=True skips it)")
            lost = index.count - index.readable
            counter.in_shards += lost
            LOGGER.warning("skipping %d record(s) of %s: %s (TFRecord cannot resume after it)",
                           lost, path, index.error)
        counts.append(index.readable)
    return counts


def _read_records(paths: list[str], takes: list[int], shuffle: bool, seed: int | None,
                  sequential: bool, end_shard_on_damage: bool) -> tf.data.Dataset:
    """(path, index in its shard, serialized record), shards read in parallel unless ``sequential``.

    ``end_shard_on_damage``: a shard whose data checksums were not verified ends at a damaged record
    (TensorFlow logs it) instead of stopping the run.
    """
    files = tf.data.Dataset.from_tensor_slices((paths, tf.constant(takes, tf.int64)))
    if shuffle:
        files = files.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)

    def read(path: tf.Tensor, take: tf.Tensor) -> tf.data.Dataset:
        records = tf.data.TFRecordDataset(path, buffer_size=_READ_BUFFER).take(take)
        if end_shard_on_damage:
            records = records.ignore_errors(log_warning=True)
        return records.enumerate().map(lambda index, record: (path, index, record))

    if sequential:
        return files.flat_map(read)
    return files.interleave(read, cycle_length=min(len(paths), _MAX_PARALLEL_FILES), block_length=1,
                            num_parallel_calls=AUTOTUNE)


def _decode_guarded(records: tf.data.Dataset, decode: Callable, num_classes: int) -> tf.data.Dataset:
    """Decode each record; one that makes TensorFlow raise becomes an element with a problem text."""
    undecodable = PROBLEMS["undecodable"]

    def guarded(path: tf.Tensor, index: tf.Tensor, record: tf.Tensor) -> tf.data.Dataset:
        decoded = tf.data.Dataset.from_tensors(record).map(lambda r: decode(r, num_classes)).ignore_errors()
        fallback = tf.data.Dataset.from_tensors(
            (tf.constant(undecodable), tf.zeros([0, 0, 3]), tf.zeros([0, 0, 1]), tf.constant(-1, tf.int64),
             tf.constant(False)))
        return decoded.concatenate(fallback).take(1).map(lambda *item: (path, index) + item)

    return records.interleave(guarded, cycle_length=_MAX_PARALLEL_FILES, block_length=1,
                              num_parallel_calls=AUTOTUNE)


def _enforce(decoded: tf.data.Dataset, source: str, skip_corrupt: bool, counter: SkipCounter) -> tf.data.Dataset:
    """Stop at (or, with skip_corrupt, skip and count) each record whose problem text is not empty."""
    def message(path: tf.Tensor, index: tf.Tensor, problem: tf.Tensor) -> tf.Tensor:
        return tf.strings.join([RECORD_PREFIX.format(source=source), path, " record ", tf.strings.as_string(index),
                                ": ", problem])

    if skip_corrupt:
        def keep(path, index, problem, *example):
            return tf.cond(problem == "", lambda: tf.constant(True),
                           lambda: counter.record_skip(message(path, index, problem)))
        checked = decoded.filter(keep)
    else:
        def check(path, index, problem, *example):
            assertion = tf.debugging.Assert(problem == "", [message(path, index, problem)])
            with tf.control_dependencies([assertion]):
                return (path, index, tf.identity(problem), *example)
        checked = decoded.map(check)
    return checked.map(lambda path, index, problem, *example: example)


def _examples(paths: list[str], takes: list[int], decode: Callable, source: str, split: str, *,
              num_classes: int, image_size: int, skip_corrupt: bool, counter: SkipCounter,
              seed: int | None, deterministic: bool, shuffle_buffer: int,
              crop_area: tuple[float, float], known_count: int | None, check_data: bool) -> tf.data.Dataset:
    """(image (S, S, 3), heatmap (S, S, 1) not yet diffused, label, clicks) per record, augmented
    for split (``clicks``: the heatmap is raw clicks, still to be diffused).

    ``takes`` holds the readable counts :func:`scan_shard` found (``check_data``: with verified data).
    """
    train = split == "train"
    records = _read_records(paths, takes, shuffle=train, seed=seed, sequential=deterministic and not train,
                            end_shard_on_damage=skip_corrupt and not check_data)
    if train:
        records = records.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    examples = _enforce(_decode_guarded(records, decode, num_classes), source, skip_corrupt, counter)
    if known_count is not None:
        examples = examples.apply(tf.data.experimental.assert_cardinality(known_count))
    if train:
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        examples = tf.data.Dataset.zip((examples, seeds))

        def augment(example, pair_seed):
            image, heatmap, label, clicks = example
            image, heatmap = random_crop_flip(image, heatmap, pair_seed, image_size, area_range=crop_area)
            return image, heatmap, label, clicks
    elif split == "val":
        def augment(image, heatmap, label, clicks):
            return center_crop(image, heatmap, image_size) + (label, clicks)
    else:
        def augment(image, heatmap, label, clicks):
            return resize_pair(image, heatmap, image_size) + (label, clicks)
    return examples.map(augment, num_parallel_calls=AUTOTUNE)


def load_clickme(
    paths_or_glob: ShardPaths,
    split: str = "train",
    batch_size: int = 32,
    image_size: int = 224,
    num_classes: int = 1000,
    deterministic: bool = False,
    skip_corrupt: bool = False,
    diffuse: bool = True,
    mix_with: ShardPaths | None = None,
    clickme_fraction: float = 0.2,
    seed: int | None = None,
    repeat: bool = False,
    *,
    shuffle_buffer: int = 2048,
    drop_remainder: bool | None = None,
    crop_area: tuple[float, float] = (0.08, 1.0),
    check_data: bool = True,
) -> tf.data.Dataset:
    """ClickMe shards (a path, directory, glob or list of them; both published layouts) -> batches.

    ``split``: "train" shuffles (shards and records) and applies the Inception crop and flip jointly
    to image and heatmap; "val" takes the central 0.875 crop; "test" only resizes (stimulus sets).
    ``diffuse`` applies the method's heatmap diffusion (64x64, 10x10 sigma-10 blur, back) to the
    raw clicks of the JPEG training layout; a map in the raw float32 stimulus layout is already
    diffused and is kept as it is.
    ``mix_with``: ImageNet-style shards (no heatmap) mixed in with token 0 and a zero heatmap, a
    ``clickme_fraction`` share of the examples coming from ClickMe (which then repeats as needed; an
    epoch ends with the ImageNet shards). ``deterministic=True`` fixes the order (eval splits read in
    file order); with a ``seed`` as well, shuffling and augmentation repeat exactly.
    ``drop_remainder`` defaults to True for "train" and False otherwise. Without mixing and with
    ``skip_corrupt=False`` the dataset's cardinality is known.

    Every shard, ClickMe and ``mix_with`` alike, is scanned first (the length headers, and with
    ``check_data`` every record checksum through TensorFlow's reader: one pass over the data): a
    missing path, an empty glob, a folder without shards or a truncated/corrupt shard raises here
    (FileNotFoundError, ClickMeDataError), one line naming the file and record (with
    ``skip_corrupt=True`` the shard is read up to the damage, and the rest is counted as skipped).
    The record checks are those of ``harmonization.clickme.layout``: a bad record (missing key,
    undecodable JPEG, heatmap/image shape mismatch, label outside [0, num_classes), non-finite or
    out-of-range pixels, negative heatmap) stops iteration with an InvalidArgumentError whose text
    holds one line "bad ClickMe record: FILE record I: WHAT" (see :func:`describe_data_error`); with
    ``skip_corrupt=True`` such records are skipped, logged and counted in ``dataset.skip_counter``.
    A warning is logged when the first record of every ClickMe shard looks like [0, 1] data.
    """
    if drop_remainder is None:
        drop_remainder = split == "train"
    check_arguments(split, batch_size, image_size, num_classes, mix_with is not None, clickme_fraction, crop_area)
    counter = SkipCounter()
    paths = resolve_shards(paths_or_glob, "ClickMe shard")
    takes = _readable_counts(paths, skip_corrupt, check_data, counter)
    warn_if_unit_range(paths, takes, LOGGER)
    imagenet_paths = None if mix_with is None else resolve_shards(mix_with, "ImageNet shard (mix_with)")
    imagenet_takes = None if mix_with is None else _readable_counts(imagenet_paths, skip_corrupt, check_data,
                                                                     counter)
    options = dict(num_classes=num_classes, image_size=image_size, skip_corrupt=skip_corrupt, counter=counter,
                   seed=seed, deterministic=deterministic, shuffle_buffer=shuffle_buffer, crop_area=crop_area,
                   check_data=check_data)
    known = None if skip_corrupt else sum(takes)
    clickme = _examples(paths, takes, decode_clickme, "ClickMe", split, known_count=known, **options)
    clickme = clickme.map(lambda image, heatmap, label, clicks: (image, heatmap, label, tf.constant(1.0), clicks))
    if mix_with is None:
        examples = clickme
    else:
        options["seed"] = None if seed is None else seed + 1  # crops independent of ClickMe's
        imagenet = _examples(imagenet_paths, imagenet_takes, decode_imagenet, "ImageNet-style", split,
                             known_count=None, **options)
        imagenet = imagenet.map(lambda image, heatmap, label, clicks: (image, heatmap, label, tf.constant(0.0),
                                                                        clicks))
        examples = tf.data.Dataset.sample_from_datasets(
            [clickme.repeat(), imagenet], weights=[clickme_fraction, 1.0 - clickme_fraction], seed=seed,
            stop_on_empty_dataset=True)
    if repeat:
        examples = examples.repeat()
    batches = examples.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=AUTOTUNE)

    def to_dict(image, heatmap, label, token, clicks):
        if diffuse:  # raw clicks only: a stimulus-layout map is already diffused
            diffused = diffuse_heatmaps(heatmap, (image_size, image_size))
            heatmap = tf.where(clicks[:, None, None, None], diffused, heatmap)
        return {"image": image, "heatmap": heatmap, "label": label, "token": token}

    batches = batches.map(to_dict, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)
    dataset_options = tf.data.Options()
    dataset_options.deterministic = deterministic
    dataset = batches.with_options(dataset_options)
    dataset.skip_counter = counter
    return dataset
