"""The torch adapter of the ClickMe input core beside tf.data, on the published JPEG layout.

256x256 JPEG training shards read at 224x224 with the training augmentation (Inception crop, flip,
diffusion), batch 32: images per second of ``load_clickme`` (tf.data) and of the torch
``DataLoader`` over ``harmonization.inputs`` with 2 workers (started by spawn, so no TensorFlow
in them, as in a torch user's process), against the demand of a harmonizer step (small_cnn,
lambda 1, 224x224, batch 32, fed from memory). Target: the torch adapter delivers >= 3x the
step's demand. Rates are measured in this run, interleaved over rounds (medians reported).
Writes benchmarks/results/clickme_torch_pipeline.json.
Run: python benchmarks/clickme_torch_pipeline.py [--batches N] [--repeats R]
"""
from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import statistics
import tempfile
import time

import harmonization  # noqa: F401  (loads triton before TensorFlow)
import keras
import tensorflow as tf
from torch.utils.data import DataLoader

from harmonization.data import clickme_mini, load_clickme
from harmonization.files import write_json
from harmonization.inputs import ClickMeInputs
from harmonization.inputs.torch_data import ClickMeBatches
from harmonization.models import build_model
from harmonization.training import Harmonizer

RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "clickme_torch_pipeline.json"
NUM_CLASSES, SIZE, BATCH, WORKERS = 4, 224, 32, 2


def batch_timer(batches, count: int, warmup: int = 3):
    """Images per second drawn from the iterator ``batches`` over ``count`` batches."""
    for _ in range(warmup):
        next(batches)

    def rate() -> float:
        start, images = time.perf_counter(), 0
        for _ in range(count):
            images += int(next(batches)["image"].shape[0])
        return images / (time.perf_counter() - start)
    return rate


def step_timer(batch: dict, steps: int):
    """Images per second of harmonizer steps of small_cnn (lambda 1) on one in-memory batch."""
    dataset = tf.data.Dataset.from_tensors(batch).repeat()
    model = Harmonizer(build_model("small_cnn", NUM_CLASSES, SIZE), lambda_harmonization=1.0)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True))
    model.fit(dataset, epochs=1, steps_per_epoch=2, verbose=0)

    def rate() -> float:
        start = time.perf_counter()
        model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0)
        return steps * BATCH / (time.perf_counter() - start)
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20, help="batches timed per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds; medians are reported")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="clickme-torch-bench-")
    try:
        data = clickme_mini(os.path.join(workdir, "256"), seed=0, image_size=256, train_size=512,
                            val_size=16, conflict_size=16, stimuli_per_class=1, shard_size=128)
        tf_data = iter(load_clickme(data["train"], split="train", batch_size=BATCH, image_size=SIZE,
                                    num_classes=NUM_CLASSES, seed=0, repeat=True))
        inputs = ClickMeInputs(data["train"], split="train", batch_size=BATCH, image_size=SIZE,
                               num_classes=NUM_CLASSES, seed=0)
        loader = DataLoader(ClickMeBatches(inputs, repeat=True), batch_size=None, num_workers=WORKERS,
                            multiprocessing_context="spawn", prefetch_factor=4)
        timers = {
            "tf_data": batch_timer(tf_data, args.batches),
            "torch": batch_timer(iter(loader), args.batches),
            "step": step_timer(next(tf_data), 2),
        }
        rates = {name: [] for name in timers}
        for _ in range(args.repeats):
            for name, timer in timers.items():
                rates[name].append(timer())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    median = {name: statistics.median(values) for name, values in rates.items()}
    result = {
        "cores": os.cpu_count(), "repeats": args.repeats, "workers": WORKERS,
        "tf_data_224_jpeg_images_per_s": median["tf_data"],
        "torch_224_jpeg_images_per_s": median["torch"],
        "harmonizer_step_224_images_per_s": median["step"],
        "ratio_torch_to_step": median["torch"] / median["step"],
        "ratio_tf_data_to_step": median["tf_data"] / median["step"],
        "ratio_torch_to_tf_data": median["torch"] / median["tf_data"],
        "all_rates": rates,
        "targets": {"ratio_torch_to_step_at_least": 3.0},
        "meets_targets": {"ratio_torch_to_step": median["torch"] / median["step"] >= 3.0},
    }
    for name, label in (("tf_data", "tf.data"), ("torch", f"torch DataLoader, {WORKERS} workers"),
                        ("step", "harmonizer step small_cnn (demand)")):
        print(f"224x224 JPEG, batch {BATCH}, {label:38s} {median[name]:7.1f} images/s "
              f"(range {min(rates[name]):.1f}-{max(rates[name]):.1f})")
    print(f"ratio torch / step: {result['ratio_torch_to_step']:.2f}x (target >= 3), "
          f"tf.data / step: {result['ratio_tf_data_to_step']:.2f}x, torch / tf.data: "
          f"{result['ratio_torch_to_tf_data']:.2f}")
    write_json(RESULTS, result)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
