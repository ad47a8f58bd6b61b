"""``load_clickme``: ClickMe TFRecord shards -> a ``tf.data.Dataset`` of training/eval batches.

Batches follow docs/data-contracts.md: ``image`` float32 (N, S, S, 3) in [0, 255],
``heatmap`` float32 (N, S, S, 1) (diffused), ``label`` int64 (N,), ``token`` float32 (N,).
"""

from __future__ import annotations

import logging

import numpy as np
import tensorflow as tf

from harmonization.clickme import ShardPaths, resolve_shards
from harmonization.clickme.errors import RECORD_PREFIX
from harmonization.clickme.reader import warn_if_unit_range
from harmonization.clickme.tfrecord import ShardIndex
from harmonization.data.augment import center_crop, planned_crop_flip, resize_pair
from harmonization.data.diffusion import diffuse_heatmaps
from harmonization.data.planned import PlannedRecords, Records
from harmonization.data.reading import SOURCES, SkipCounter, decode_guarded, enforce, read_records, scan_readable
from harmonization.data.records import Decoded, decode_clickme, decode_imagenet
from harmonization.inputs.core import check_arguments

LOGGER = logging.getLogger("harmonization.data")
AUTOTUNE = tf.data.AUTOTUNE


def _evaluation_examples(
    shards: list[ShardIndex],
    split: str,
    *,
    num_classes: int,
    image_size: int,
    skip_corrupt: bool,
    counter: SkipCounter,
    deterministic: bool,
    check_data: bool,
) -> tf.data.Dataset:
    """(image, heatmap not yet diffused, label, token 1, clicks) per ClickMe record in file order,
    centre-cropped ("val") or resized ("test")."""
    takes = [shard.readable for shard in shards]
    records = read_records(
        [shard.path for shard in shards],
        takes,
        sequential=deterministic,
        end_shard_on_damage=skip_corrupt and not check_data,
    )
    decoded = decode_guarded(records, decode_clickme, num_classes)
    examples = enforce(decoded, "ClickMe", skip_corrupt, counter)
    if not skip_corrupt:
        examples = examples.apply(tf.data.experimental.assert_cardinality(sum(takes)))
    geometry = center_crop if split == "val" else resize_pair

    def augment(image, heatmap, label, clicks):
        return geometry(image, heatmap, image_size) + (label, tf.constant(1.0), clicks)

    return examples.map(augment, num_parallel_calls=AUTOTUNE)


def _decode_either(record: tf.Tensor, num_classes: int, token: tf.Tensor, *extra) -> Decoded:
    """A ClickMe record (token 1) or an ImageNet-style one (token 0)."""
    return tf.cond(token > 0, lambda: decode_clickme(record, num_classes), lambda: decode_imagenet(record, num_classes))


def _source(example: tuple) -> tf.Tensor:
    token = example[4]
    clickme, imagenet = (RECORD_PREFIX.format(source=source) for source in SOURCES)
    return tf.where(token > 0, clickme, imagenet)


def _planned_examples(
    planned: PlannedRecords,
    repeat: bool,
    *,
    num_classes: int,
    image_size: int,
    crop_area: tuple[float, float],
    skip_corrupt: bool,
    counter: SkipCounter,
) -> tf.data.Dataset:
    """(image, heatmap not yet diffused, label, token, clicks, mixup weight, mixup partner) per
    record of the core's plan, with the core's crop and flip ("train")."""
    decoded = decode_guarded(planned.dataset(repeat), _decode_either, num_classes)
    examples = enforce(decoded, _source, skip_corrupt, counter)
    train = planned.split == "train"
    geometry = center_crop if planned.split == "val" else resize_pair

    def augment(image, heatmap, label, clicks, token, draws, weight, partner):
        if train:
            image, heatmap = planned_crop_flip(image, heatmap, draws, image_size, area_range=crop_area)
        else:
            image, heatmap = geometry(image, heatmap, image_size)
        return image, heatmap, label, token, clicks, weight, partner

    return examples.map(augment, num_parallel_calls=AUTOTUNE)


def _mix(batch: dict, num_classes: int, weight: tf.Tensor, partner: tf.Tensor) -> dict:
    """``transforms.mixup`` in the graph, with the core's weights and partners."""

    def blend(x: tf.Tensor) -> tf.Tensor:
        w = tf.reshape(weight, [-1] + [1] * (x.shape.rank - 1))
        return w * x + (1.0 - w) * tf.gather(x, partner)

    labels = tf.one_hot(batch["label"], num_classes)
    return {
        "image": blend(batch["image"]),
        "heatmap": blend(batch["heatmap"]),
        "label": blend(labels),
        "token": batch["token"] * tf.gather(batch["token"], partner),
    }


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
    drop_remainder: bool | None = None,
    crop_area: tuple[float, float] = (0.08, 1.0),
    check_data: bool = True,
    mixup: float | None = None,
) -> tf.data.Dataset:
    """ClickMe shards (a path, directory, glob or list of them; both published layouts) -> batches.

    ``split``: "train" shuffles and applies the Inception crop and flip jointly to image and
    heatmap; "val" takes the central 0.875 crop; "test" only resizes (stimulus sets).
    ``diffuse`` applies the method's heatmap diffusion (64x64, 10x10 sigma-10 blur, back) to the
    raw clicks of the JPEG training layout; a map in the raw float32 stimulus layout is already
    diffused and is kept as it is.
    ``mix_with``: ImageNet-style shards (no heatmap) mixed in with token 0 and a zero heatmap, a
    ``clickme_fraction`` share of the examples coming from ClickMe (which then repeats as needed; an
    epoch ends with the ImageNet shards). ``mixup`` (alpha) mixes each batch with a permutation of
    itself (labels then float32 (N, C)).
    The order, the mixing, the crops and flips and the mixup are those of the framework-neutral
    core (``harmonization.inputs.ClickMeInputs``) for ``seed`` (None: a fresh one): the torch reader
    gives the same batches. Each new iteration of a dataset without ``repeat`` reads the next epoch
    (a new order and new crops); ``repeat`` reads epochs 0, 1, ... in one stream, so that a fresh
    iterator sees the same batches. ``deterministic=False`` lets parallel decoding reorder the
    examples a little (each keeps its own crop).
    ``drop_remainder`` defaults to True for "train" and False otherwise. Without mixing, without
    ``repeat`` and with ``skip_corrupt=False`` the dataset's cardinality is known.

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
    if mixup is not None and mixup <= 0:
        raise ValueError(f"mixup alpha must be positive, got {mixup}")
    if mixup is not None and repeat and not drop_remainder:
        raise ValueError("mixup with repeat needs drop_remainder: a batch must not straddle two epochs")
    counter = SkipCounter()
    paths = resolve_shards(paths_or_glob, "ClickMe shard")
    shards = scan_readable(paths, skip_corrupt, check_data, counter)
    warn_if_unit_range(paths, [shard.readable for shard in shards], LOGGER)
    imagenet = (
        None
        if mix_with is None
        else scan_readable(resolve_shards(mix_with, "ImageNet shard (mix_with)"), skip_corrupt, check_data, counter)
    )
    shape = dict(num_classes=num_classes, image_size=image_size, skip_corrupt=skip_corrupt, counter=counter)
    planned = split == "train" or mix_with is not None or mixup is not None
    if planned:
        seed = int(np.random.SeedSequence().entropy) if seed is None else int(seed)
        mixed = None if imagenet is None else Records.of(imagenet)
        plan = PlannedRecords(
            Records.of(shards), mixed, split, seed, batch_size, drop_remainder, clickme_fraction, mixup
        )
        examples = _planned_examples(plan, repeat, crop_area=crop_area, **shape)
        if not (skip_corrupt or repeat or mix_with is not None):
            total = sum(shard.readable for shard in shards)
            count = total - total % batch_size if drop_remainder else total
            examples = examples.apply(tf.data.experimental.assert_cardinality(count))
    else:
        examples = _evaluation_examples(shards, split, deterministic=deterministic, check_data=check_data, **shape)
        no_mixup = (tf.constant(1.0), tf.constant(0, tf.int64))
        examples = examples.map(lambda *example: example + no_mixup)
        if repeat:
            examples = examples.repeat()
    batches = examples.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=AUTOTUNE)

    def to_dict(image, heatmap, label, token, clicks, weight, partner):
        if diffuse:  # raw clicks only: a stimulus-layout map is already diffused
            diffused = diffuse_heatmaps(heatmap, (image_size, image_size))
            heatmap = tf.where(clicks[:, None, None, None], diffused, heatmap)
        batch = {"image": image, "heatmap": heatmap, "label": label, "token": token}
        return batch if mixup is None else _mix(batch, num_classes, weight, partner)

    batches = batches.map(to_dict, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)
    dataset_options = tf.data.Options()
    dataset_options.deterministic = deterministic
    dataset = batches.with_options(dataset_options)
    dataset.skip_counter = counter
    return dataset
