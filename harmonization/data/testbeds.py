"""Ready-made ClickMe-style test beds beside ClickMe-mini, for trying the harmonizer on data it was
not tuned for.

Each kind draws one object per image (its shape is the class; the human map is its mask) and an
off-object shortcut that names a class which agrees with the label in ``cue_agreement`` of the
train/val/stimuli images and is independent of it in "conflict", like ClickMe-mini, but with
another kind and place of shortcut, other shapes, sizes and contrast, and another number of
classes (docs/clickme-mini.md lists them with their measured results):

- ``"edges"``: 6 classes; large, faint objects (a little brighter than the background); the
  shortcut is a thin bright line at one of 6 places on the image border.
- ``"stripes"``: 3 classes; small, high-contrast objects; the shortcut is a faint stripe texture
  over the whole background whose orientation names the class.
- ``"neighbour"``: 4 classes; medium objects; the shortcut is a small bright dot a few pixels from
  the object, on the side (above, below, left, right) that names the class.

``write_testbed(kind, out, seed, **options)`` writes any of them, or ClickMe-mini for ``"mini"``,
as real shards in ClickMe-mini's splits and layouts (train, val, conflict in the JPEG layout,
stimuli in the raw float32 one), so ``harmonize train / evaluate`` and ``adv-align attack`` run on
them; deterministic per seed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from harmonization.data.mini import SHAPES, MiniConfig, check_config, clickme_mini, shape_mask, write_generated

KINDS = ("mini", "edges", "stripes", "neighbour")
FORMAT_VERSION = 2  # 2: the stimulus maps diffused in numpy, as ClickMe-mini's version 5


@dataclass(frozen=True)
class TestbedConfig(MiniConfig):
    """Everything that determines a test bed's files (recorded in its manifest): ClickMe-mini's
    settings, the kind, and the test beds' own format version."""

    kind: str = "edges"
    version: int = FORMAT_VERSION


@dataclass(frozen=True)
class _Look:
    """How a kind's objects look: class shapes (names in ``mini.SHAPES``), radius (times the image
    size), background level and object-minus-background contrast (per channel), pixel noise."""

    shapes: tuple[str, ...]
    radius: tuple[float, float]
    background: tuple[float, float]
    contrast: tuple[float, float]
    noise: float


def _object(
    rng: np.random.Generator, look: _Look, size: int, label: int, center: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Float image of background and object (no noise yet), the object's boolean mask, and the
    background's colour."""
    mask = shape_mask(SHAPES.index(look.shapes[label]), size, (center[0], center[1]), radius)
    background = rng.uniform(*look.background, 3)
    image = np.broadcast_to(background, (size, size, 3)).copy()
    image[mask] = background + rng.uniform(*look.contrast, 3)
    return image, mask, background


def _finish(
    rng: np.random.Generator, look: _Look, image: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    image = image + rng.normal(0.0, look.noise, image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), mask.astype(np.uint8) * 255


EDGES = _Look(("disk", "triangle", "ring", "diamond", "frame", "x"), (0.17, 0.22), (40, 100), (30, 50), 14.0)
EDGE_LINE_CONTRAST = (70, 110)  # above the background: brighter than the faint objects


def edge_line(size: int, place: int) -> tuple[slice, slice]:
    """Rows and columns of the "edges" cue at place 0-5: the left and right halves of the top
    edge, the same of the bottom edge, the middle of the left edge, of the right edge."""
    thick, half, inset = max(1, size // 16), size // 2 - 2, 1
    near, far = inset, size - inset - thick
    spans = [
        (near, 2, True),
        (near, size - 2 - half, True),
        (far, 2, True),
        (far, size - 2 - half, True),
        (near, (size - half) // 2, False),
        (far, (size - half) // 2, False),
    ]
    fixed, start, horizontal = spans[place]
    line, across = slice(start, start + half), slice(fixed, fixed + thick)
    return (across, line) if horizontal else (line, across)


def _draw_edges(rng: np.random.Generator, size: int, label: int, cue: int) -> tuple[np.ndarray, np.ndarray]:
    radius = size * rng.uniform(*EDGES.radius)
    margin = radius + max(1, size // 16) + 2  # clear of every border line
    image, mask, background = _object(rng, EDGES, size, label, rng.uniform(margin, size - margin, 2), radius)
    rows, cols = edge_line(size, cue)
    image[rows, cols] = background + rng.uniform(*EDGE_LINE_CONTRAST)
    return _finish(rng, EDGES, image, mask)


STRIPES = _Look(("triangle", "ring", "x", "square"), (0.10, 0.14), (20, 60), (140, 180), 12.0)
STRIPE_PERIOD = 4
STRIPE_AMPLITUDE = (18, 30)


def _draw_stripes(rng: np.random.Generator, size: int, label: int, cue: int) -> tuple[np.ndarray, np.ndarray]:
    radius = size * rng.uniform(*STRIPES.radius)
    image, mask, _ = _object(rng, STRIPES, size, label, rng.uniform(radius + 1, size - radius - 1, 2), radius)
    rows, cols = np.mgrid[0:size, 0:size]
    phase = [rows, cols, rows + cols, rows - cols][cue] + rng.integers(STRIPE_PERIOD)
    bright = (phase % STRIPE_PERIOD) < STRIPE_PERIOD // 2
    image[bright & ~mask] += rng.uniform(*STRIPE_AMPLITUDE)
    return _finish(rng, STRIPES, image, mask)


NEIGHBOUR = _Look(("diamond", "frame", "x", "disk"), (0.13, 0.17), (30, 80), (70, 110), 16.0)
DOT_GAP = 3  # pixels between the object's bounding circle and the dot


def _draw_neighbour(rng: np.random.Generator, size: int, label: int, cue: int) -> tuple[np.ndarray, np.ndarray]:
    radius = size * rng.uniform(*NEIGHBOUR.radius)
    dot = max(2, size // 12)
    reach = radius + DOT_GAP + dot  # the dot's far side, from the object's centre
    direction = np.array([(-1, 0), (1, 0), (0, -1), (0, 1)][cue])  # above, below, left, right
    low = np.where(direction < 0, reach, radius) + 1
    high = size - np.where(direction > 0, reach, radius) - 1
    center = rng.uniform(low, high)
    image, mask, _ = _object(rng, NEIGHBOUR, size, label, center, radius)
    middle = np.rint(center + direction * (radius + DOT_GAP + dot / 2) - dot / 2).astype(int)
    image[middle[0] : middle[0] + dot, middle[1] : middle[1] + dot] = image[mask][0]
    return _finish(rng, NEIGHBOUR, image, mask)


_DRAW: dict[str, tuple[Callable, int]] = {
    "edges": (_draw_edges, 6),
    "stripes": (_draw_stripes, 4),
    "neighbour": (_draw_neighbour, 4),
}
DEFAULT_CLASSES = {"mini": 4, "edges": 6, "stripes": 3, "neighbour": 4}


def write_testbed(kind: str, out: str | os.PathLike, seed: int = 0, **options) -> dict[str, str | int]:
    """Write test bed ``kind`` (one of ``KINDS``) to ``out``; returns what ``clickme_mini`` returns.

    ``options`` are ``clickme_mini``'s keyword arguments (image_size, num_classes, train_size,
    val_size, conflict_size, stimuli_per_class, cue_agreement, quality, shard_size) with the same
    defaults, except num_classes, which defaults to the kind's (``DEFAULT_CLASSES``).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    options = {"num_classes": DEFAULT_CLASSES[kind], **options}
    if kind == "mini":
        return clickme_mini(out, seed=seed, **options)
    settings = dict(
        image_size=32,
        train_size=2000,
        val_size=400,
        conflict_size=400,
        stimuli_per_class=25,
        cue_agreement=0.9,
        quality=95,
        shard_size=500,
    )
    unknown = set(options) - set(settings) - {"num_classes"}
    if unknown:
        raise ValueError(f"unknown test bed option(s): {', '.join(sorted(unknown))}")
    config = TestbedConfig(kind=kind, seed=seed, **{**settings, **options})
    draw, max_classes = _DRAW[kind]
    check_config(config, max_classes)
    return write_generated(out, config, draw)
