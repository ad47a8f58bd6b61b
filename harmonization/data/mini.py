"""ClickMe-mini: a small generated ClickMe, written as real shards in the published layouts.

Each image shows one bright object (its shape is the class) at a random place on a dark, noisy
background; the human map is the object's mask. A small bright patch near the border is a shortcut:
its place (a corner, or for more than 4 classes an edge middle) names a class that agrees with the
label in ``cue_agreement`` of the train/val/stimuli images and is independent of the label in the
"conflict" split. See docs/clickme-mini.md. ``write_generated`` writes any such generator's splits
(``harmonization.data.testbeds`` holds more of them).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from harmonization.clickme import write_clickme
from harmonization.files import atomic_write, write_json
from harmonization.inputs.transforms import diffuse

MANIFEST = "clickme-mini.json"
CUES = "cues.npz"
FORMAT_VERSION = 5  # 5: the stimulus maps diffused in numpy (same bits on every machine)
SHAPES = ("square", "disk", "triangle", "plus", "ring", "diamond", "frame", "x")
SPLITS = ("train", "val", "conflict", "stimuli")
# Measured on a 2-core CPU with the small CNN (docs/clickme-mini.md): the object alone is learnt to
# ~99% accuracy; the cue is as bright as an object, so the training saliency can see it.
OBJECT_RADIUS = (0.11, 0.16)  # times the image size
BACKGROUND_LEVELS = (20, 80)  # per channel, one colour per image
OBJECT_LEVELS = (120, 190)  # per channel: always brighter than the background
PIXEL_NOISE = 18.0  # standard deviation, every pixel and channel
CUE_NOISE = 8.0

Draw = Callable[[np.random.Generator, int, int, int], tuple[np.ndarray, np.ndarray]]
"""(rng, image_size, label, cue class) -> (uint8 HxWx3 image, uint8 HxW object mask 0/255)."""


@dataclass(frozen=True)
class MiniConfig:
    """Everything that determines the generated files (recorded in the manifest)."""

    seed: int
    image_size: int
    num_classes: int
    train_size: int
    val_size: int
    conflict_size: int
    stimuli_per_class: int
    cue_agreement: float
    quality: int
    shard_size: int
    version: int = FORMAT_VERSION


def shape_mask(shape: int, size: int, center: tuple[float, float], radius: float) -> np.ndarray:
    """Boolean (size, size) mask of class shape ``shape`` centred at (row, col) with ``radius``."""
    rows, cols = np.mgrid[0:size, 0:size] + 0.5
    v, u = (rows - center[0]) / radius, (cols - center[1]) / radius
    box = np.maximum(np.abs(u), np.abs(v))
    disk = np.hypot(u, v)
    masks = {
        "square": box <= 0.8,
        "disk": disk <= 1.0,
        "triangle": (v >= -0.9) & (v <= 0.9) & (np.abs(u) <= (v + 0.9) / 1.8),
        "plus": (box <= 1.0) & ((np.abs(u) <= 0.33) | (np.abs(v) <= 0.33)),
        "ring": (disk >= 0.55) & (disk <= 1.0),
        "diamond": np.abs(u) + np.abs(v) <= 1.0,
        "frame": (box >= 0.5) & (box <= 0.85),
        "x": (box <= 0.85) & ((np.abs(u - v) <= 0.4) | (np.abs(u + v) <= 0.4)),
    }
    return masks[SHAPES[shape]]


def cue_box(size: int, place: int) -> tuple[slice, slice]:
    """Rows and columns of the cue patch at place 0-3 (corners: top left, top right, bottom left,
    bottom right) or 4-7 (edge middles: top, bottom, left, right)."""
    patch, inset = max(2, size // 8), max(1, size // 16)
    near, far, middle = inset, size - inset - patch, (size - patch) // 2
    top, left = [
        (near, near),
        (near, far),
        (far, near),
        (far, far),
        (near, middle),
        (far, middle),
        (middle, near),
        (middle, far),
    ][place]
    return slice(top, top + patch), slice(left, left + patch)


def _draw(rng: np.random.Generator, size: int, label: int, cue: int) -> tuple[np.ndarray, np.ndarray]:
    """One image (uint8 HxWx3) with a grey cue patch at the place of class ``cue``, and its object mask
    (uint8 0/255); the patch is as bright as an object, so only its place carries the class."""
    cue_rows, cue_cols = cue_box(size, cue)
    radius = size * rng.uniform(*OBJECT_RADIUS)
    while True:  # a centre whose object box keeps one pixel away from the cue patch
        center = rng.uniform(radius + 1, size - radius - 1, 2)
        lo, hi = center - radius - 1, center + radius + 1
        if hi[0] <= cue_rows.start or lo[0] >= cue_rows.stop or hi[1] <= cue_cols.start or lo[1] >= cue_cols.stop:
            break
    mask = shape_mask(label, size, (center[0], center[1]), radius)
    image = np.broadcast_to(rng.uniform(*BACKGROUND_LEVELS, 3), (size, size, 3)).copy()
    image[mask] = rng.uniform(*OBJECT_LEVELS, 3)
    image += rng.normal(0.0, PIXEL_NOISE, image.shape)
    patch_shape = image[cue_rows, cue_cols].shape
    image[cue_rows, cue_cols] = rng.uniform(*OBJECT_LEVELS) + rng.normal(0.0, CUE_NOISE, patch_shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), mask.astype(np.uint8) * 255


def _labels_and_cues(
    rng: np.random.Generator, count: int, num_classes: int, agreement: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """Balanced shuffled labels; cues equal to the label with probability ``agreement``, otherwise
    another class (None: the cue is drawn independently of the label)."""
    labels = rng.permutation(np.arange(count) % num_classes)
    if agreement is None:
        return labels, rng.integers(num_classes, size=count)
    other = (labels + rng.integers(1, num_classes, size=count)) % num_classes
    return labels, np.where(rng.random(count) < agreement, labels, other)


def _split_examples(
    rng: np.random.Generator, config: Any, draw: Draw, labels: np.ndarray, cues: np.ndarray, as_float: bool
) -> Iterator[dict]:
    for label, cue in zip(labels, cues):
        image, mask = draw(rng, config.image_size, int(label), int(cue))
        if as_float:  # like the published stimulus set: the map already diffused, as evaluation sees it
            heatmap = diffuse(mask[:, :, None].astype(np.float32))
            yield {"image": image.astype(np.float32), "heatmap": heatmap, "label": int(label)}
        else:
            yield {"image": image, "heatmap": mask, "label": int(label)}


def _split_plan(config: Any) -> dict[str, tuple[int, float | None]]:
    return {
        "train": (config.train_size, config.cue_agreement),
        "val": (config.val_size, config.cue_agreement),
        "conflict": (config.conflict_size, None),
        "stimuli": (config.stimuli_per_class * config.num_classes, config.cue_agreement),
    }


def _existing(out_dir: str, config: Any) -> bool:
    try:
        with open(os.path.join(out_dir, MANIFEST)) as handle:
            manifest = json.load(handle)
    except (OSError, ValueError):
        return False
    if manifest.get("config") != asdict(config):
        return False
    files = manifest.get("files", {})
    return all(
        os.path.isfile(os.path.join(out_dir, name)) and os.path.getsize(os.path.join(out_dir, name)) == size
        for name, size in files.items()
    )


def check_config(config: Any, max_classes: int) -> None:
    """Refuse settings no generated set can have (a ValueError naming the setting)."""
    if not 2 <= config.num_classes <= max_classes:
        raise ValueError(f"num_classes must lie in [2, {max_classes}], got {config.num_classes}")
    if config.image_size < 16:
        raise ValueError(f"image_size must be at least 16, got {config.image_size}")
    sizes = {
        "train_size": config.train_size,
        "val_size": config.val_size,
        "conflict_size": config.conflict_size,
        "stimuli_per_class": config.stimuli_per_class,
    }
    for name, value in sizes.items():
        if value < 1:
            raise ValueError(f"{name} must be positive, got {value}")
    if not 0.0 <= config.cue_agreement <= 1.0:
        raise ValueError(f"cue_agreement must lie in [0, 1], got {config.cue_agreement}")


def clickme_mini(
    out_dir: str | os.PathLike,
    seed: int = 0,
    image_size: int = 32,
    num_classes: int = 4,
    train_size: int = 2000,
    val_size: int = 400,
    conflict_size: int = 400,
    stimuli_per_class: int = 25,
    cue_agreement: float = 0.9,
    quality: int = 95,
    shard_size: int = 500,
) -> dict[str, str | int]:
    """Write ClickMe-mini to ``out_dir`` (instant when a complete set with the same settings is there).

    Returns a dict: "train", "val", "conflict" (JPEG layout) and "stimuli" (raw float32 stimulus
    layout), each a glob of that split's shards; "cues", the path of an NPZ with per-split arrays
    ``{split}_label`` and ``{split}_cue`` (the cue's class) in file order; and "num_classes" and
    "image_size" as ints. Deterministic from ``seed`` (same seed, same bytes).
    """
    config = MiniConfig(
        seed,
        image_size,
        num_classes,
        train_size,
        val_size,
        conflict_size,
        stimuli_per_class,
        cue_agreement,
        quality,
        shard_size,
    )
    check_config(config, len(SHAPES))
    return write_generated(out_dir, config, _draw)


def write_generated(out_dir: str | os.PathLike, config: Any, draw: Draw) -> dict[str, str | int]:
    """Write the four splits of a generated set described by ``config`` (a dataclass with the
    fields of ``MiniConfig``, already checked), drawing each image with ``draw``; returns what
    ``clickme_mini`` returns. Instant when the manifest shows a complete set with this config."""
    out_dir = os.fspath(out_dir)
    num_classes = config.num_classes
    result: dict[str, str | int] = {split: os.path.join(out_dir, f"{split}-*-of-*.tfrecords") for split in SPLITS}
    result.update(cues=os.path.join(out_dir, CUES), num_classes=num_classes, image_size=config.image_size)
    if _existing(out_dir, config):
        return result
    os.makedirs(out_dir, exist_ok=True)
    manifest_path = os.path.join(out_dir, MANIFEST)
    if os.path.exists(manifest_path):
        os.remove(manifest_path)  # the set is incomplete until the new manifest is written
    streams = np.random.SeedSequence(config.seed).spawn(len(SPLITS))
    written: list[str] = []
    cues: dict[str, np.ndarray] = {}
    for split, stream in zip(SPLITS, streams):
        rng = np.random.default_rng(stream)
        count, agreement = _split_plan(config)[split]
        labels, split_cues = _labels_and_cues(rng, count, num_classes, agreement)
        cues[f"{split}_label"], cues[f"{split}_cue"] = labels, split_cues
        layout = "stimulus" if split == "stimuli" else "jpeg"
        examples = _split_examples(rng, config, draw, labels, split_cues, as_float=layout == "stimulus")
        written += write_clickme(
            examples,
            out_dir,
            shard_size=config.shard_size,
            layout=layout,
            prefix=split,
            num_classes=num_classes,
            quality=config.quality,
        )
    with atomic_write(result["cues"], "wb") as handle:
        np.savez(handle, **cues)
    written.append(result["cues"])
    write_json(
        manifest_path,
        {"config": asdict(config), "files": {os.path.basename(path): os.path.getsize(path) for path in written}},
    )
    return result
