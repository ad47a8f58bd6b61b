"""The torch adapter of the ClickMe input core beside tf.data, on the published JPEG layout.

256x256 JPEG training shards read at 224x224 with the training augmentation (Inception crop, flip,
diffusion), batch 32: images per second of ``load_clickme`` (tf.data) and of the torch
``DataLoader`` over ``harmonization.inputs`` with 2 workers (started by spawn, so no TensorFlow
in them, as in a torch user's process), against the demand of a harmonizer step (small_cnn,
lambda 1, 224x224, batch 32, fed from memory, timed between batch ends without ``fit``'s set-up:
``benchmarks/timing.py``, shared with ``clickme_pipeline.py``). Target: the torch adapter delivers
>= 3x the step's demand. Rates are measured in this run, interleaved over rounds, each reader
measurement on a fresh iterator (medians reported; ratios within a round). Writes
benchmarks/results/clickme_torch_pipeline.json.
Run: python benchmarks/clickme_torch_pipeline.py [--batches N] [--steps S] [--repeats R]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import statistics
import tempfile

import harmonization  # noqa: F401  (loads triton before TensorFlow)
import tensorflow as tf
from timing import JPEG_SET, NUM_CLASSES, harmonizer_timer, interleaved, pipeline_timer, verdict
from torch.utils.data import DataLoader

from harmonization.data import clickme_mini, load_clickme
from harmonization.files import write_json
from harmonization.inputs import ClickMeInputs
from harmonization.inputs.torch_data import ClickMeBatches

RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "clickme_torch_pipeline.json"
SIZE, BATCH, WORKERS = 224, 32, 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20, help="batches timed per reader measurement")
    parser.add_argument("--steps", type=int, default=10, help="harmonizer steps timed per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds; medians are reported")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="clickme-torch-bench-")
    try:
        data = clickme_mini(os.path.join(workdir, "256"), seed=0, **JPEG_SET)
        tf_data = load_clickme(
            data["train"],
            split="train",
            batch_size=BATCH,
            image_size=SIZE,
            num_classes=NUM_CLASSES,
            seed=0,
            repeat=True,
        )
        inputs = ClickMeInputs(
            data["train"], split="train", batch_size=BATCH, image_size=SIZE, num_classes=NUM_CLASSES, seed=0
        )
        loader = DataLoader(
            ClickMeBatches(inputs, repeat=True),
            batch_size=None,
            num_workers=WORKERS,
            multiprocessing_context="spawn",
            prefetch_factor=4,
        )
        in_memory = tf.data.Dataset.from_tensors(next(iter(tf_data))).repeat()
        rates = interleaved(
            {
                "tf_data": pipeline_timer(tf_data, args.batches),
                "torch": pipeline_timer(loader, args.batches),
                "step": harmonizer_timer(in_memory, SIZE, args.steps),
            },
            args.repeats,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    median = {name: statistics.median(values) for name, values in rates.items()}
    round_ratios = {
        reader: [r / q for r, q in zip(rates[reader], rates["step"])]  # same round
        for reader in ("torch", "tf_data")
    }
    ratio = {reader: statistics.median(values) for reader, values in round_ratios.items()}
    result = {
        "cores": os.cpu_count(),
        "repeats": args.repeats,
        "batches": args.batches,
        "steps": args.steps,
        "workers": WORKERS,
        "tf_data_224_jpeg_images_per_s": median["tf_data"],
        "torch_224_jpeg_images_per_s": median["torch"],
        "harmonizer_step_224_images_per_s": median["step"],
        "ratio_torch_to_step": ratio["torch"],
        "ratio_tf_data_to_step": ratio["tf_data"],
        "ratio_torch_to_tf_data": median["torch"] / median["tf_data"],
        "all_rates": rates,
        "ratio_per_round": round_ratios,
        "targets": {"ratio_torch_to_step_at_least": 3.0},
        "verdicts": {"ratio_torch_to_step": verdict(round_ratios["torch"], 3.0)},
    }
    for name, label in (
        ("tf_data", "tf.data"),
        ("torch", f"torch DataLoader, {WORKERS} workers"),
        ("step", "harmonizer step small_cnn (demand)"),
    ):
        print(
            f"224x224 JPEG, batch {BATCH}, {label:38s} {median[name]:7.1f} images/s "
            f"(range {min(rates[name]):.1f}-{max(rates[name]):.1f})"
        )
    print(
        f"ratio torch / step: {ratio['torch']:.2f}x (median of the rounds' ratios; target >= 3: "
        f"{result['verdicts']['ratio_torch_to_step']}), "
        f"tf.data / step: {result['ratio_tf_data_to_step']:.2f}x, torch / tf.data: "
        f"{result['ratio_torch_to_tf_data']:.2f}"
    )
    write_json(RESULTS, result)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
