"""ClickMe training pipeline (decode, diffuse, augment, batch) vs one harmonizer step of the small CNN.

Targets: at 64x64 the pipeline delivers at least 3x the images per second that a harmonizer step
of ``small_cnn`` consumes (so the pipeline is never the bottleneck), and the published 256x256
JPEG layout read at 224x224 sustains at least 150 images/s. All rates are measured in this run,
on this machine's cores, interleaved over a few rounds (medians and ranges reported) so that a change
of load on a shared machine hits every measurement alike. Each pipeline measurement draws from a
fresh iterator, so no prefetch buffer fills while another timer runs; steps are timed between batch
ends by a callback, without ``fit``'s set-up. Also shown: the harmonizer fed by the pipeline,
against the same steps fed from memory. Prints one line per measurement and writes
benchmarks/results/clickme_pipeline.json. Run: python benchmarks/clickme_pipeline.py [--batches N]
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

from harmonization.data import clickme_mini, load_clickme
from harmonization.files import write_json

RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "clickme_pipeline.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=30, help="batches timed per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds; medians are reported")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="clickme-bench-")
    try:
        small = clickme_mini(
            os.path.join(workdir, "64"),
            seed=0,
            image_size=64,
            train_size=2048,
            val_size=16,
            conflict_size=16,
            stimuli_per_class=1,
        )
        large = clickme_mini(os.path.join(workdir, "256"), seed=0, **JPEG_SET)

        def train_set(info: dict, image_size: int, batch_size: int) -> tf.data.Dataset:
            return load_clickme(
                info["train"],
                split="train",
                batch_size=batch_size,
                image_size=image_size,
                num_classes=NUM_CLASSES,
                seed=0,
                repeat=True,
            )

        in_memory = tf.data.Dataset.from_tensors(next(iter(train_set(small, 64, 64)))).repeat()
        rates = interleaved(
            {
                "pipeline_64": pipeline_timer(train_set(small, 64, 64), args.batches),
                "step_64": harmonizer_timer(in_memory, 64, args.batches),
                "step_64_fed": harmonizer_timer(train_set(small, 64, 64), 64, args.batches),
                "pipeline_224": pipeline_timer(train_set(large, 224, 32), args.batches),
            },
            args.repeats,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    median = {name: statistics.median(values) for name, values in rates.items()}
    round_ratios = [p / q for p, q in zip(rates["pipeline_64"], rates["step_64"])]  # same round, side by side
    ratio = statistics.median(round_ratios)
    result = {
        "cores": os.cpu_count(),
        "repeats": args.repeats,
        "pipeline_64_images_per_s": median["pipeline_64"],
        "harmonizer_step_64_images_per_s": median["step_64"],
        "ratio_pipeline_to_step": ratio,
        "harmonizer_fed_by_pipeline_images_per_s": median["step_64_fed"],
        "pipeline_224_jpeg_images_per_s": median["pipeline_224"],
        "all_rates": rates,
        "ratio_per_round": round_ratios,
        "targets": {"ratio_at_least": 3.0, "pipeline_224_at_least": 150.0},
        "verdicts": {"ratio": verdict(round_ratios, 3.0), "pipeline_224": verdict(rates["pipeline_224"], 150.0)},
    }

    def spread(name: str) -> str:
        return f"{median[name]:7.0f} images/s (range {min(rates[name]):.0f}-{max(rates[name]):.0f})"

    print(f"64x64   pipeline (decode, diffuse, crop+flip, batch 64): {spread('pipeline_64')}")
    print(f"64x64   harmonizer step, small_cnn, lambda 1, in memory: {spread('step_64')}")
    print(
        f"64x64   ratio pipeline / step: {ratio:.1f}x (median of the rounds' ratios, range "
        f"{min(round_ratios):.1f}-{max(round_ratios):.1f}; target >= 3: {result['verdicts']['ratio']})"
    )
    print(
        f"64x64   harmonizer fed by the pipeline:                 {spread('step_64_fed')} "
        f"= {median['step_64_fed'] / median['step_64']:.2f} of the in-memory rate"
    )
    print(
        f"224x224 pipeline from 256x256 JPEG shards (batch 32):   {spread('pipeline_224')} "
        f"(target >= 150: {result['verdicts']['pipeline_224']})"
    )
    write_json(RESULTS, result)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
