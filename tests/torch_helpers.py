"""Shared helpers for the attack tests: a tiny CNN trained in seconds on synthetic images, cached per
process; a tiny timm checkpoint with stimuli it classifies "correctly" for the sweep, report and CLI tests."""
from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from attacks_torch.models import LITE0_NAME, PixelModel, load_model
from harmonization.clickme import encode_example, write_records

# Tiny models on a shared 2-core machine: one thread avoids oversubscription (10x slower otherwise).
torch.set_num_threads(1)

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
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * (IMAGE_SIZE // 4) ** 2, NUM_CLASSES),
    )


@functools.lru_cache(maxsize=None)
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


@functools.lru_cache(maxsize=None)
def lite0() -> PixelModel:
    """The offline ImageNet efficientnet-lite0, loaded once per process."""
    return load_model(LITE0_NAME)


@pytest.fixture
def cnn() -> PixelModel:
    return trained_cnn()


@pytest.fixture
def test_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """12 held-out images and labels (a different seed from the training set)."""
    return synthetic_images(12, seed=7)


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


def make_stimuli(directory: Path, checkpoint: str, n: int = 8, size: int = 32, name: str = SWEEP_MODEL,
                 shards: int = 2, seed: int = 0) -> str:
    """Stimulus-layout shards of bright squares on noise (human map: the square), drawn from ``seed``
    and labelled with the checkpoint's own predictions (so every image is attacked); returns their glob."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 60, (n, size, size, 3)).astype(np.float32)
    heatmaps = np.zeros((n, size, size, 1), np.float32)
    for i in range(n):
        row, col = rng.integers(2, size - 12, 2)
        images[i, row:row + 10, col:col + 10] += 150
        heatmaps[i, row:row + 10, col:col + 10] = 1.0
    model = load_model(name, checkpoint=checkpoint, num_classes=4)
    with torch.no_grad():
        pixels = torch.from_numpy(images / 255).permute(0, 3, 1, 2)
        labels = model(model.resize_images(pixels)).argmax(1).tolist()
    per_shard = -(-n // shards)
    for shard in range(shards):
        part = range(shard * per_shard, min(n, (shard + 1) * per_shard))
        write_records(directory / f"stim-{shard:05d}-of-{shards:05d}.tfrecords", [
            encode_example({"image": images[i].tobytes(), "heatmap": heatmaps[i].tobytes(),
                                     "label": labels[i]}) for i in part])
    return str(directory / "stim-*-of-*.tfrecords")


def cli_args(models: str, stimuli: str, out: Path, *extra: str) -> list[str]:
    """``adv-align attack`` arguments with the FAST_SWEEP settings."""
    return ["attack", "--models", models, "--stimuli", stimuli, "--out", str(out), "--batch-size", "4",
            "--hi", "4", "--tol", "0.05", "--weights", "random", "--num-classes", "4", "--threads", "1",
            "--no-progress", *extra]
