"""Shared helpers for the TensorFlow-side tests: small generated ClickMe-style data, subprocesses.

Importing this module loads ``harmonization`` (and so triton) before TensorFlow (trap 1).
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import harmonization  # noqa: F401  (must precede TensorFlow)
import numpy as np
import tensorflow as tf


def clickme_arrays(n: int = 16, size: int = 32, num_classes: int = 4, seed: int = 0) -> dict:
    """Images with one bright square on a dark noisy background; the square is the human map."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 60, (n, size, size, 3)).astype(np.float32)
    heatmaps = np.zeros((n, size, size, 1), np.float32)
    side = max(size // 4, 2)
    for i in range(n):
        top, left = rng.integers(0, size - side, 2)
        images[i, top:top + side, left:left + side] = rng.uniform(180, 255, 3)
        heatmaps[i, top:top + side, left:left + side] = 1.0
    return {"image": images, "heatmap": heatmaps,
            "label": rng.integers(0, num_classes, n).astype(np.int64),
            "token": np.ones(n, np.float32)}


def as_dataset(arrays: dict, batch_size: int = 8) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices(arrays).batch(batch_size)


def run_python(code: str, env: dict | None = None, timeout: int = 300,
               args: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (same virtualenv), with ``env`` added to os.environ."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True,
                          text=True, timeout=timeout, env=full_env)


def write_random_label_shards(folder, n: int = 64, size: int = 32, num_classes: int = 4,
                              seed: int = 0) -> str:
    """ClickMe shards of ``clickme_arrays`` (labels independent of the images: nothing to learn);
    returns their glob."""
    from harmonization.data import write_clickme

    arrays = clickme_arrays(n, size, num_classes, seed)
    examples = [{"image": arrays["image"][i], "heatmap": arrays["heatmap"][i, ..., 0],
                 "label": int(arrays["label"][i])} for i in range(n)]
    write_clickme(examples, folder, num_classes=num_classes, prefix="random")
    return os.path.join(os.fspath(folder), "random-*")
