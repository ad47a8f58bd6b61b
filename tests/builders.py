"""Builders every test (and benchmark) shares: small generated data, tiny models, reference files.

One module for both sides. It imports torch (the attack-side builders subclass ``nn.Module``) but
TensorFlow only inside the functions that need it; ``harmonization`` comes first, so either may
load in any order (docs/traps.md, "Import order"). Fixtures that use these builders are in conftest.py.
"""

from __future__ import annotations

import functools
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import harmonization  # noqa: F401  (before TensorFlow and torch)
import numpy as np
import torch
from torch import nn

from attacks_torch.models import LITE0_NAME, PixelModel, load_model
from harmonization.clickme import encode_example, write_records

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_ENV = ROOT / ".reference-env"
"""The reference constructors (``make venv`` installs tests/reference/requirements.txt there)."""
REFERENCE_SCRIPTS = ROOT / "tests" / "reference"

# Tiny models on a shared 2-core machine: one thread avoids oversubscription (10x slower otherwise).
torch.set_num_threads(1)


# --- TensorFlow side: ClickMe-style arrays and shards, subprocesses --------------------------------


def clickme_arrays(n: int = 16, size: int = 32, num_classes: int = 4, seed: int = 0) -> dict:
    """Images with one bright square on a dark noisy background; the square is the human map."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 60, (n, size, size, 3)).astype(np.float32)
    heatmaps = np.zeros((n, size, size, 1), np.float32)
    side = max(size // 4, 2)
    for i in range(n):
        top, left = rng.integers(0, size - side, 2)
        images[i, top : top + side, left : left + side] = rng.uniform(180, 255, 3)
        heatmaps[i, top : top + side, left : left + side] = 1.0
    return {
        "image": images,
        "heatmap": heatmaps,
        "label": rng.integers(0, num_classes, n).astype(np.int64),
        "token": np.ones(n, np.float32),
    }


def as_dataset(arrays: dict, batch_size: int = 8):
    """A batched ``tf.data.Dataset`` of ``arrays``."""
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices(arrays).batch(batch_size)


def python_path(*folders) -> str:
    """A child's PYTHONPATH: ``folders`` first, then this process's (which names tests/site)."""
    return os.pathsep.join(str(folder) for folder in (*folders, os.environ.get("PYTHONPATH")) if folder)


def run_python(
    code: str, env: dict | None = None, timeout: int = 300, args: tuple[str, ...] = ()
) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (same virtualenv), with ``env`` added to os.environ."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


def write_random_label_shards(folder, n: int = 64, size: int = 32, num_classes: int = 4, seed: int = 0) -> str:
    """ClickMe shards of ``clickme_arrays`` (labels independent of the images: nothing to learn);
    returns their glob."""
    from harmonization.data import write_clickme

    arrays = clickme_arrays(n, size, num_classes, seed)
    examples = [
        {"image": arrays["image"][i], "heatmap": arrays["heatmap"][i, ..., 0], "label": int(arrays["label"][i])}
        for i in range(n)
    ]
    write_clickme(examples, folder, num_classes=num_classes, prefix="random")
    return os.path.join(os.fspath(folder), "random-*")


def object_features(masks) -> np.ndarray:
    """Each object mask cropped to its bounding box and resized to 8x8: its shape, not place or size."""
    from skimage.transform import resize

    features = []
    for mask in masks:
        rows, cols = np.nonzero(mask)
        crop = mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].astype(float)
        features.append(resize(crop, (8, 8), anti_aliasing=True).ravel())
    return np.array(features)


# --- torch side: synthetic images, tiny models, sweep inputs ---------------------------------------

NUM_CLASSES = 4
IMAGE_SIZE = 32


def synthetic_images(n: int, seed: int, size: int = IMAGE_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy backgrounds with a brighter square whose quadrant and colour give the class; in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, NUM_CLASSES, (n,), generator=generator)
    images = 0.25 + 0.3 * torch.rand(n, 3, size, size, generator=generator)
    half, side = size // 2, size // 4
    for i, label in enumerate(labels.tolist()):
        top = (label // 2) * half + int(torch.randint(0, half - side + 1, (1,), generator=generator))
        left = (label % 2) * half + int(torch.randint(0, half - side + 1, (1,), generator=generator))
        images[i, label % 3, top : top + side, left : left + side] += 0.4
    return images.clamp(0, 1), labels


def tiny_network(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * (IMAGE_SIZE // 4) ** 2, NUM_CLASSES),
    )


@functools.cache
def trained_cnn() -> PixelModel:
    """A 4-class CNN on 32x32 synthetic images, trained for about a second; the same object per process."""
    images, labels = synthetic_images(1024, seed=1)
    network = tiny_network()
    optimizer = torch.optim.Adam(network.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(2)
    for _ in range(4):
        for batch in torch.randperm(len(images), generator=generator).split(64):
            loss = nn.functional.cross_entropy(network((images[batch] - 0.5) / 0.25), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return PixelModel(network, name="tiny_cnn", input_size=(IMAGE_SIZE, IMAGE_SIZE), mean=(0.5,) * 3, std=(0.25,) * 3)


@functools.cache
def lite0() -> PixelModel:
    """The offline ImageNet efficientnet-lite0, loaded once per process."""
    return load_model(LITE0_NAME)


class PeriodicModel(nn.Module):
    """Two classes whose margin is cos(pi z / period) along one direction u of pixel space.

    z = <u, x - 0.5>, u a unit vector of random signs. Class 0 holds where the cosine is positive,
    so walking along u the image leaves class 0 and comes back: success of an attack along u is not
    monotonic in eps.
    """

    def __init__(self, shape: tuple[int, int, int], period: float, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        signs = torch.randint(0, 2, shape, generator=generator).float() * 2 - 1
        self.register_buffer("u", signs / signs.norm())  # equal steps on every pixel: no clipping before z ~ 14
        self.period = period

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = ((x - 0.5) * self.u).flatten(1).sum(1)
        margin = 4.0 * torch.cos(math.pi * z / self.period)
        return torch.stack([margin, torch.zeros_like(margin)], dim=1)

    def image_at(self, z: float) -> torch.Tensor:
        """The image 0.5 + z u, at position z along u."""
        return 0.5 + z * self.u


SWEEP_MODEL = "test_convnext"
FAST_SWEEP = dict(batch_size=4, hi=4.0, tol=0.05, weights="random", num_classes=4, progress=False)
"""SweepConfig settings that attack SWEEP_MODEL on make_stimuli's images in seconds."""


def make_checkpoint(directory: Path, name: str = SWEEP_MODEL, seed: int = 0) -> str:
    """A 4-class random-init timm model saved as a local checkpoint; returns its path."""
    model = load_model(name, weights="random", num_classes=4, seed=seed)
    path = directory / f"{name}-{seed}.pth"
    torch.save(model.network.state_dict(), path)
    return str(path)


def make_stimuli(
    directory: Path,
    checkpoint: str,
    n: int = 8,
    size: int = 32,
    name: str = SWEEP_MODEL,
    shards: int = 2,
    seed: int = 0,
    relabelled: int = 0,
) -> str:
    """Stimulus-layout shards of bright squares on noise (human map: the square), drawn from ``seed``
    and labelled with the checkpoint's own predictions (so every image is attacked), except the last
    ``relabelled`` images, labelled with the next class (so the stimuli hold more than one class and
    the model is not judged at chance); returns their glob."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 60, (n, size, size, 3)).astype(np.float32)
    heatmaps = np.zeros((n, size, size, 1), np.float32)
    for i in range(n):
        row, col = rng.integers(2, size - 12, 2)
        images[i, row : row + 10, col : col + 10] += 150
        heatmaps[i, row : row + 10, col : col + 10] = 1.0
    model = load_model(name, checkpoint=checkpoint, num_classes=4)
    with torch.no_grad():
        pixels = torch.from_numpy(images / 255).permute(0, 3, 1, 2)
        labels = model(model.resize_images(pixels)).argmax(1).tolist()
    labels[n - relabelled :] = [(label + 1) % 4 for label in labels[n - relabelled :]] if relabelled else []
    per_shard = -(-n // shards)
    for shard in range(shards):
        part = range(shard * per_shard, min(n, (shard + 1) * per_shard))
        write_records(
            directory / f"stim-{shard:05d}-of-{shards:05d}.tfrecords",
            [
                encode_example({"image": images[i].tobytes(), "heatmap": heatmaps[i].tobytes(), "label": labels[i]})
                for i in part
            ],
        )
    return str(directory / "stim-*-of-*.tfrecords")


def cli_args(models: str, stimuli: str, out: Path, *extra: str) -> list[str]:
    """``adv-align attack`` arguments with the FAST_SWEEP settings."""
    return [
        "attack",
        "--models",
        models,
        "--stimuli",
        stimuli,
        "--out",
        str(out),
        "--batch-size",
        "4",
        "--hi",
        "4",
        "--tol",
        "0.05",
        "--weights",
        "random",
        "--num-classes",
        "4",
        "--threads",
        "1",
        "--no-progress",
        *extra,
    ]


# --- reference-written files in the published formats ---------------------------------------------

PUBLISHED_FIXTURES = {
    "vit_b16": "vit_b16",
    "vgg16": "vgg16",
    "resnet50v2": "resnet50v2",
    "resnet50": "resnet50v2",
    "efficientnetb0": "efficientnetb0",
}
"""Fixture file -> the published name it loads as (resnet50: a ResNet v1 in the resnet50v2 slot)."""
KECAM_FIXTURES = ("convnext_tiny", "levit128", "maxvit_tiny")


def _reference_run(script: str, out: Path, names, extra_path: Path) -> subprocess.CompletedProcess:
    """Run a tests/reference script with the legacy stack (tf-keras, ``TF_USE_LEGACY_KERAS=1``)."""
    if not REFERENCE_ENV.is_dir():
        raise RuntimeError(
            f"{REFERENCE_ENV} is missing: `make venv` installs it "
            "(pip install --no-deps --target .reference-env -r tests/reference/requirements.txt)"
        )
    env = {
        **os.environ,
        "PYTHONPATH": python_path(REFERENCE_ENV, extra_path),
        "TF_USE_LEGACY_KERAS": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    result = subprocess.run(
        [sys.executable, str(REFERENCE_SCRIPTS / script), str(out), *names],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def write_published_files(out: Path) -> Path:
    """Random-weight files in every published full-model / ViT format, written by the reference
    constructors themselves (vit-keras 0.1.2, tf.keras 2 applications, the ``efficientnet`` package):
    32 px stand-ins (ViT-B/16 with 2 of its 12 blocks); ``NAME.h5``, ``NAME.pixels.npy``, ``NAME.logits.npy``."""
    import json

    result = _reference_run("write_published.py", out, PUBLISHED_FIXTURES, REFERENCE_SCRIPTS / "shims")
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert {entry["keras"] for entry in report.values()} == {"tf_keras"}  # the legacy stack wrote them
    assert report["efficientnetb0"]["last_activation"] == "softmax"  # the package's head
    return out


def write_kecam_files(out: Path) -> Path:
    """kecam-written reduced-depth ConvNeXt-Tiny (64 px), LeViT-128 and MaxViT-Tiny (224 px) files,
    their images and logits, and the full-size layouts (tests/reference/kecam_fixtures.py)."""
    _reference_run("kecam_fixtures.py", out, KECAM_FIXTURES, ROOT)
    return out


def timm_test_resnet(seed: int = 0):
    """``timm:test_resnet`` as a Keras pixel model (4 classes, 32 px; Keras's torch backend) and its
    torch network, every all-zero parameter drawn from U(0.5, 1): timm zero-inits each block's last
    batch-norm scale, which would block the residual branches the harmonization gradient must cross."""
    import keras

    from harmonization.models import build_model
    from harmonization.models.timm_pixel import timm_network

    keras.utils.set_random_seed(seed)
    model = build_model("timm:test_resnet", 4, 32)
    network = timm_network(model)
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for parameter in network.parameters():
            if not parameter.any():
                parameter.copy_(torch.from_numpy(rng.uniform(0.5, 1.0, tuple(parameter.shape)).astype("float32")))
    return model, network
