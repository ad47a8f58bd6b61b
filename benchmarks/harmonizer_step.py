"""Seconds per ``fit`` step: cross-entropy only (lambda 0, no saliency pass) vs the harmonizer,
on each Keras backend (TensorFlow, JAX, torch).

Each backend runs in its own interpreter (the backend is fixed per process), on the same
batches: the small CNN and ResNet50V2 at 64x64, batch 16 by default. Target: harmonizer /
cross-entropy step time at most 2.5 on each. Writes benchmarks/results/harmonizer_step.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time

TARGET_RATIO = 2.5
BACKENDS = ("tensorflow", "jax", "torch")
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "harmonizer_step.json")


def batches(size: int, classes: int, batch_size: int, count: int):
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    n = batch_size * count
    data = {
        "image": rng.uniform(0, 255, (n, size, size, 3)).astype(np.float32),
        "heatmap": rng.uniform(0, 1, (n, size, size, 1)).astype(np.float32),
        "label": rng.integers(0, classes, n).astype(np.int64),
    }
    return tf.data.Dataset.from_tensor_slices(data).batch(batch_size).cache().repeat()


def step_times(name: str, size: int, steps: int, rounds: int, batch_size: int) -> dict[float, list[list[float]]]:
    """Seconds of each timed step for lambda 0 and 1, per round: the two are timed in alternating
    rounds, so that a change in machine load between the two affects both alike."""
    import keras

    from harmonization.models import build_model
    from harmonization.training import Harmonizer

    class StepTimer(keras.callbacks.Callback):
        """Wall time of each training step (Keras runs batch callbacks in step with the steps)."""

        def __init__(self):
            super().__init__()
            self.rounds: list[list[float]] = []

        def on_train_begin(self, logs=None):
            self.rounds.append([])

        def on_train_batch_begin(self, batch, logs=None):
            self._start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.rounds[-1].append(time.perf_counter() - self._start)

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
    return {lam: timer.rounds for lam, (_, timer) in runs.items()}


def measure(args: argparse.Namespace) -> dict:
    """This process's backend: {model: timings}, and the versions."""
    import harmonization  # noqa: F401  (loads triton before TensorFlow)
    import keras

    if keras.backend.backend() == "torch":  # docs/traps.md, "Torch threads"
        import torch

        torch.set_num_threads(args.torch_threads)
    results = {}
    for case in args.models.split(","):
        name, size = case.split(":")
        times = step_times(name, int(size), args.steps, args.rounds, args.batch_size)
        ce, harmonized = (statistics.median(sum(times[lam], [])) for lam in (0.0, 1.0))
        round_ratios = [statistics.median(h) / statistics.median(c) for c, h in zip(times[0.0], times[1.0])]
        results[name] = {
            "image_size": int(size),
            "batch_size": args.batch_size,
            "timed_steps": args.steps * args.rounds,
            "cross_entropy_step_s": ce,
            "harmonizer_step_s": harmonized,
            "ratio": harmonized / ce,
            "round_ratios": round_ratios,
            "target_ratio": TARGET_RATIO,
            "meets_target": harmonized / ce <= TARGET_RATIO,
        }
    package = importlib.import_module(keras.backend.backend())
    return {"keras": keras.__version__, "version": package.__version__, "results": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backends",
        default=",".join(BACKENDS),
        help="comma-separated Keras backends (those not installed are skipped)",
    )
    parser.add_argument("--models", default="small_cnn:64,resnet50v2:64", help="comma-separated NAME:IMAGE_SIZE")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=6, help="alternating rounds per model")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch intra-op threads on the torch backend (1: no oversubscription "
        "beside TensorFlow's data threads on a small machine)",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(args)))
        return
    from harmonization.files import write_json

    report = {
        "benchmark": "harmonizer_step",
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "torch_threads": args.torch_threads,
        "backends": {},
    }
    for backend in args.backends.split(","):
        if importlib.util.find_spec(backend) is None:
            print(f"{backend}: not installed, skipped", flush=True)
            continue
        worker = subprocess.run(
            [
                sys.executable,
                __file__,
                "--worker",
                "--models",
                args.models,
                "--steps",
                str(args.steps),
                "--rounds",
                str(args.rounds),
                "--batch-size",
                str(args.batch_size),
                "--torch-threads",
                str(args.torch_threads),
            ],
            env={**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"},
            capture_output=True,
            text=True,
            check=False,
        )
        if worker.returncode != 0:
            sys.exit(f"{backend}: the benchmark failed:\n{worker.stderr[-3000:]}")
        report["backends"][backend] = measured = json.loads(worker.stdout.strip().splitlines()[-1])
        for name, row in measured["results"].items():
            print(
                f"{backend:10s} {name:11s} {row['image_size']}x{row['image_size']} batch "
                f"{row['batch_size']}: cross-entropy {row['cross_entropy_step_s']:.4f} s/step, "
                f"harmonizer {row['harmonizer_step_s']:.4f} s/step, ratio {row['ratio']:.2f} "
                f"(per round {min(row['round_ratios']):.2f}-{max(row['round_ratios']):.2f}; "
                f"target <= {TARGET_RATIO})",
                flush=True,
            )
    write_json(RESULTS, report)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
