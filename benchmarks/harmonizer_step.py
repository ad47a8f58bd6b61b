"""Seconds per ``fit`` step: cross-entropy only (lambda 0, no saliency pass) vs the harmonizer.

Both are measured in this run, on the same batches, for the small CNN (32x32) and ResNet50V2
(64x64), batch 16. Target: harmonizer / cross-entropy step time at most 2.5 for both.
Writes benchmarks/results/harmonizer_step.json.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import harmonization  # noqa: F401  (loads triton before TensorFlow)
import keras
import numpy as np
import tensorflow as tf

from harmonization.files import write_json
from harmonization.models import build_model
from harmonization.training import Harmonizer

TARGET_RATIO = 2.5
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "harmonizer_step.json")


class StepTimer(keras.callbacks.Callback):
    """Wall time of each training step (Keras runs batch callbacks in step with the steps)."""

    def __init__(self):
        super().__init__()
        self.times: list[float] = []

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter() - self._start)


def batches(size: int, classes: int, batch_size: int, count: int) -> tf.data.Dataset:
    rng = np.random.default_rng(0)
    n = batch_size * count
    data = {"image": rng.uniform(0, 255, (n, size, size, 3)).astype(np.float32),
            "heatmap": rng.uniform(0, 1, (n, size, size, 1)).astype(np.float32),
            "label": rng.integers(0, classes, n).astype(np.int64)}
    return tf.data.Dataset.from_tensor_slices(data).batch(batch_size).cache().repeat()


def step_times(name: str, size: int, steps: int, rounds: int, batch_size: int) -> dict[float, float]:
    """Median seconds per step for lambda 0 and 1, timed in alternating rounds (so that a change
    in machine load between the two affects both alike)."""
    data = batches(size, 10, batch_size, 4)
    runs = {}
    for lam in (0.0, 1.0):
        keras.utils.set_random_seed(0)
        harmonizer = Harmonizer(build_model(name, 10, size), lambda_harmonization=lam)
        harmonizer.compile(optimizer=keras.optimizers.SGD(1e-3, momentum=0.9, nesterov=True))
        harmonizer.fit(data, epochs=1, steps_per_epoch=3, verbose=0)  # trace and warm up
        runs[lam] = (harmonizer, StepTimer())
    for _ in range(rounds):
        for harmonizer, timer in runs.values():
            harmonizer.fit(data, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[timer])
    return {lam: statistics.median(timer.times) for lam, (_, timer) in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per model")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    cases = {"small_cnn": (32, args.steps * 3), "resnet50v2": (64, args.steps)}
    results = {}
    for name, (size, steps) in cases.items():
        times = step_times(name, size, steps, args.rounds, args.batch_size)
        ce, harmonized = times[0.0], times[1.0]
        ratio = harmonized / ce
        results[name] = {"image_size": size, "batch_size": args.batch_size,
                         "timed_steps": steps * args.rounds,
                         "cross_entropy_step_s": ce, "harmonizer_step_s": harmonized,
                         "ratio": ratio, "target_ratio": TARGET_RATIO, "meets_target": ratio <= TARGET_RATIO}
        print(f"{name:11s} {size}x{size} batch {args.batch_size}: cross-entropy {ce:.4f} s/step, "
              f"harmonizer {harmonized:.4f} s/step, ratio {ratio:.2f} (target <= {TARGET_RATIO})",
              flush=True)
    report = {"benchmark": "harmonizer_step", "cpus": os.cpu_count(), "machine": platform.machine(),
              "tensorflow": tf.__version__, "keras": keras.__version__, "results": results}
    write_json(RESULTS, report)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
