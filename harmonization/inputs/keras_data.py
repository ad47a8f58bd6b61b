"""ClickMe batches for Keras's ``fit`` and ``evaluate`` on the JAX and torch backends, without
TensorFlow: ``keras.utils.PyDataset`` views of the framework-neutral core (``ClickMeInputs``).

``TrainingBatches`` is the endless stream of training batches from a given global batch on: the
data's epochs follow one another (epoch ``e`` in the order and with the crops of ``(seed, e)``),
whatever ``fit``'s epochs are, so a run resumed after ``k`` steps starts at batch ``k`` without
reading the batches before it and then sees what the uninterrupted run sees. ``EpochBatches`` is
one epoch, read again at each iteration (validation, evaluation). Batches are numpy dicts
(docs/data-contracts.md); Keras turns them into the backend's tensors. ``PyDataset`` threads
(``workers``) build batches ahead of the step, handed out in order, so a run is deterministic per seed.
``evaluation_data`` picks the reader of the active backend: ``tf.data`` on TensorFlow, these elsewhere.
"""

from __future__ import annotations

import bisect
import threading

import keras

from harmonization.inputs.core import ClickMeInputs

PREFETCH_WORKERS = 2
"""Threads that build training batches ahead of the step (decoding releases the GIL)."""


class TrainingBatches(keras.utils.PyDataset):
    """Global batches ``start``, ``start + 1``, ... of ``inputs``, without end (item ``i`` is
    global batch ``start + i``)."""

    def __init__(self, inputs: ClickMeInputs, start: int = 0, workers: int = PREFETCH_WORKERS):
        super().__init__(workers=workers)
        self.inputs = inputs
        self.start = int(start)
        self._plans = [inputs.plan(0)]  # the plans of data epochs 0, 1, ... met so far
        self._ends = [inputs.num_batches(self._plans[0])]  # each one's end, in global batches
        self._lock = threading.Lock()  # the workers extend the two lists

    @property
    def num_batches(self) -> None:
        return None  # endless: fit takes steps_per_epoch batches per epoch

    def locate(self, step: int) -> tuple[int, int]:
        """(data epoch, batch within it) of global batch ``step``."""
        with self._lock:
            while step >= self._ends[-1]:
                self._plans.append(self.inputs.plan(len(self._plans)))
                self._ends.append(self._ends[-1] + self.inputs.num_batches(self._plans[-1]))
        epoch = bisect.bisect_right(self._ends, step)
        return epoch, step - (self._ends[epoch - 1] if epoch else 0)

    def __getitem__(self, index: int) -> dict:
        epoch, within = self.locate(self.start + index)
        return self.inputs.batch(self._plans[epoch], epoch, within)


class EpochBatches(keras.utils.PyDataset):
    """The batches of epoch ``epoch`` of ``inputs``, in order; iterable again and again."""

    def __init__(self, inputs: ClickMeInputs, epoch: int = 0):
        super().__init__()
        self.inputs = inputs
        self.epoch = epoch
        self.plan = inputs.plan(epoch)

    def __len__(self) -> int:
        return self.inputs.num_batches(self.plan)

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of {len(self)}")
        return self.inputs.batch(self.plan, self.epoch, index)


def on_tensorflow() -> bool:
    """Whether this process trains on the TensorFlow backend (and reads through ``tf.data``)."""
    return keras.backend.backend() == "tensorflow"


def evaluation_data(
    paths, split: str, *, batch_size: int, image_size: int, num_classes: int, drop_remainder: bool = False
):
    """The batches of ``paths`` read in file order for evaluation: a ``tf.data`` dataset on
    TensorFlow, an ``EpochBatches`` of the framework-neutral reader elsewhere."""
    shape = dict(batch_size=batch_size, image_size=image_size, num_classes=num_classes)
    if on_tensorflow():
        from harmonization.data import load_clickme

        return load_clickme(paths, split, deterministic=True, drop_remainder=drop_remainder, **shape)
    return EpochBatches(ClickMeInputs(paths, split, drop_remainder=drop_remainder, **shape))
