"""The records of a shuffled (training) or mixed ``tf.data`` read, in the order, with the crops and
flips and with the mixup of the framework-neutral core (``harmonization.inputs.core``).

A Python generator walks the core's plan of each epoch and hands ``tf.data`` one batch's worth of
records at a time: the serialized records (read at their offsets, already checked by the shard
scan), their token, the core's crop draws and the batch's mixup weights and order. Decoding,
cropping, resizing and diffusion then run in the graph as for the other splits, so for the same
seed this reader and the torch one (``harmonization.inputs.torch_data``) give the same batches.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from harmonization.clickme.tfrecord import ShardIndex
from harmonization.inputs.core import crop_draws, draw_plan, mixup_draws
from harmonization.inputs.records import read_payload
from harmonization.inputs.transforms import CROP_DRAWS


@dataclass(frozen=True)
class Records:
    """The readable records of some shards: per record, its shard's path, its index there, its
    offset."""

    path: np.ndarray
    index: np.ndarray
    offset: np.ndarray

    @classmethod
    def of(cls, shards: list[ShardIndex]) -> Records:
        path = [shard.path for shard in shards for _ in range(shard.readable)]
        index = [i for shard in shards for i in range(shard.readable)]
        offset = [o for shard in shards for o in shard.offsets[: shard.readable]]
        return cls(np.asarray(path, object), np.asarray(index, np.int64), np.asarray(offset, np.int64))

    def __len__(self) -> int:
        return len(self.index)


SIGNATURE = (
    tf.TensorSpec([None], tf.string),
    tf.TensorSpec([None], tf.int64),
    tf.TensorSpec([None], tf.string),
    tf.TensorSpec([None], tf.float32),
    tf.TensorSpec([None, CROP_DRAWS], tf.float64),
    tf.TensorSpec([None], tf.float32),
    tf.TensorSpec([None], tf.int64),
)
"""(path, index in its shard, serialized record, token, crop draws, mixup weight, mixup partner)
per record of a chunk."""


@dataclass
class PlannedRecords:
    """The records of each epoch of ``clickme`` (mixed with ``imagenet`` when given) as the core
    plans them for ``split`` and ``seed``; ``mixup``: the core's mixup alpha (its weights and
    partners ride along, else weight 1 and the record itself)."""

    clickme: Records
    imagenet: Records | None
    split: str
    seed: int
    batch_size: int
    drop_remainder: bool
    clickme_fraction: float
    mixup: float | None

    def epoch(self, epoch: int) -> Iterator[tuple]:
        """The chunks (one batch each) of ``epoch``."""
        epoch = int(epoch)
        imagenet = None if self.imagenet is None else len(self.imagenet)
        plan = draw_plan(self.seed, self.split, epoch, len(self.clickme), imagenet, self.clickme_fraction)
        count = len(plan) - len(plan) % self.batch_size if self.drop_remainder else len(plan)
        for index, start in enumerate(range(0, count, self.batch_size)):
            positions = range(start, min(start + self.batch_size, count))
            rows = [(self.clickme if plan.token[p] else self.imagenet, int(plan.record[p])) for p in positions]
            paths = [records.path[row] for records, row in rows]
            indices = np.array([records.index[row] for records, row in rows], np.int64)
            payloads = [
                read_payload(path, int(records.offset[row]), int(number), check_data=False)
                for path, (records, row), number in zip(paths, rows, indices)
            ]
            if self.split == "train":
                draws = np.stack([crop_draws(self.seed, epoch, p) for p in positions])
            else:
                draws = np.zeros((len(positions), CROP_DRAWS))
            if self.mixup is None:
                weight, order = np.ones(len(positions), np.float32), np.arange(len(positions))
            else:
                weight, order = mixup_draws(self.seed, epoch, index, 0, len(positions), self.mixup)
            yield (
                np.asarray(paths, object),
                indices,
                np.asarray(payloads, object),
                plan.token[start : start + len(positions)],
                draws,
                weight,
                order.astype(np.int64),
            )

    def dataset(self, repeat: bool) -> tf.data.Dataset:
        """Epochs 0, 1, ... without end when ``repeat``; else one epoch per iteration, the next
        epoch at each new iteration (as ``reshuffle_each_iteration``)."""
        if repeat:
            chunks = tf.data.Dataset.counter().flat_map(
                lambda epoch: tf.data.Dataset.from_generator(self.epoch, args=(epoch,), output_signature=SIGNATURE)
            )
            chunks = chunks.apply(tf.data.experimental.assert_cardinality(tf.data.INFINITE_CARDINALITY))
        else:
            epochs = itertools.count()
            chunks = tf.data.Dataset.from_generator(lambda: self.epoch(next(epochs)), output_signature=SIGNATURE)
        return chunks.unbatch()
