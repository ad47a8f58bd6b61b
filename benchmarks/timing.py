"""What the ClickMe input benchmarks share: the 256 px JPEG set they read, a reader's images per
second, a harmonizer step's demand (timed between batch ends, without ``fit``'s set-up), and
interleaved rounds."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import keras

from harmonization.models import build_model
from harmonization.training import Harmonizer

NUM_CLASSES = 4
JPEG_SET = dict(image_size=256, train_size=512, val_size=16, conflict_size=16, stimuli_per_class=1, shard_size=128)
"""``clickme_mini`` options of the JPEG-layout set both reader benchmarks time at 224 px."""


def pipeline_timer(dataset: Iterable[dict], batches: int, warmup: int = 3) -> Callable[[], float]:
    """A function returning the images per second drawn from ``dataset`` over ``batches`` batches.

    Each measurement opens a fresh iterator (warmed up by ``warmup`` untimed batches) and drops it
    after: a live iterator's prefetch buffer would refill while the other timers run, handing the
    next measurement batches made on their time (and slowing them)."""

    def rate() -> float:
        iterator = iter(dataset)
        for _ in range(warmup):
            next(iterator)
        start, images = time.perf_counter(), 0
        for _ in range(batches):
            images += int(next(iterator)["image"].shape[0])
        elapsed = time.perf_counter() - start
        del iterator
        return images / elapsed

    return rate


class StepClock(keras.callbacks.Callback):
    """The end time of every training batch: steps are timed between batch ends, leaving out
    ``fit``'s own set-up (data adapter, iterator, callbacks) and the first step."""

    def on_train_begin(self, logs=None) -> None:
        self.ends = []

    def on_train_batch_end(self, batch, logs=None) -> None:
        self.ends.append(time.perf_counter())


def harmonizer_timer(dataset, image_size: int, steps: int) -> Callable[[], float]:
    """A function returning the images per second of the harmonized small CNN's steps (lambda 1)
    fed by ``dataset``, from the batch ends of one ``fit`` of ``steps`` steps; the model is built
    and traced once, here."""
    model = Harmonizer(build_model("small_cnn", NUM_CLASSES, image_size), lambda_harmonization=1.0)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True))
    model.fit(dataset, epochs=1, steps_per_epoch=3, verbose=0)
    batch_size = int(next(iter(dataset))["image"].shape[0])
    clock = StepClock()

    def rate() -> float:
        model.fit(dataset, epochs=1, steps_per_epoch=steps + 1, verbose=0, callbacks=[clock])
        return steps * batch_size / (clock.ends[-1] - clock.ends[0])

    return rate


def verdict(values: list[float], at_least: float) -> str:
    """ "met" when every round reaches the target, "MISSED" when none does, else "not decided"."""
    reached = [value >= at_least for value in values]
    if all(reached):
        return "met"
    return "MISSED" if not any(reached) else "not decided (rounds straddle the target)"


def interleaved(timers: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Run the timers in turn, ``repeats`` rounds, so a change of machine load hits all of them."""
    rates: dict[str, list[float]] = {name: [] for name in timers}
    for _ in range(repeats):
        for name, timer in timers.items():
            rates[name].append(timer())
    return rates
