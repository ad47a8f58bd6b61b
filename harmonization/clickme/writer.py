"""Write ClickMe (and ImageNet-style) TFRecord shards with numpy and Pillow, atomically.

Shards are written under temporary names and renamed once all are complete, so a reader never
sees a partial set, and a failed write (a bad example, a full disk) leaves the folder as it was.
"""

from __future__ import annotations

import contextlib
import glob
import io
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image

from harmonization.clickme.example import encode_example
from harmonization.clickme.layout import LAYOUTS, array_problem, problem
from harmonization.clickme.tfrecord import frame_record
from harmonization.files import output_errors, replace_from


def _check_example(example: Any, where: str, num_classes: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    if not isinstance(example, dict):
        raise ValueError(f"{where}: expected a dict with image, heatmap and label, got {type(example).__name__}")
    missing = [key for key in ("image", "heatmap", "label") if key not in example]
    if missing:
        raise ValueError(f"{where}: missing key(s) {', '.join(missing)}")
    image = np.asarray(example["image"])
    heatmap = np.asarray(example["heatmap"])
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"{where}: image must be HxWx3, got shape {image.shape}")
    if heatmap.ndim == 3 and heatmap.shape[-1] == 1:
        heatmap = heatmap[..., 0]
    found = array_problem(image, heatmap)
    if found is not None:
        raise ValueError(f"{where}: {found}")
    label = example["label"]
    if isinstance(label, (bool, np.bool_)) or not isinstance(label, (int, np.integer)):
        raise ValueError(f"{where}: label must be an integer, got {label!r}")
    label = int(label)
    if num_classes is not None and not 0 <= label < num_classes:
        raise ValueError(f"{where}: {problem('label', label=label, num_classes=num_classes)}")
    if label < 0:
        raise ValueError(f"{where}: {problem('negative label', label=label)}")
    return image, heatmap, label


def _heatmap_to_uint8(heatmap: np.ndarray) -> np.ndarray:
    if heatmap.dtype == np.uint8:
        return heatmap
    peak = float(heatmap.max()) if heatmap.size else 0.0
    scaled = heatmap.astype(np.float64) * (255.0 / peak) if peak > 0 else np.zeros(heatmap.shape)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def encode_jpeg(pixels: np.ndarray, quality: int = 95) -> bytes:
    """JPEG bytes of a uint8 (H, W, 3) image or (H, W) map, without chroma subsampling."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality, subsampling=0)
    return buffer.getvalue()


def encode_clickme(
    example: Any,
    layout: str = "jpeg",
    where: str = "example",
    num_classes: int | None = None,
    quality: int = 95,
) -> bytes:
    """One serialized ClickMe ``tf.train.Example`` from a dict {image, heatmap, label}.

    ``jpeg`` layout: the image is stored as a JPEG (uint8, or float rounded to uint8) without chroma
    subsampling, the heatmap as a 1-channel JPEG (a float map is rescaled so its peak is 255).
    ``stimulus`` layout: both as raw float32 (square images). Raises ValueError naming ``where``.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    image, heatmap, label = _check_example(example, where, num_classes)
    if layout == "jpeg":
        pixels = image if image.dtype == np.uint8 else np.clip(np.rint(image), 0, 255).astype(np.uint8)
        image_bytes = encode_jpeg(pixels, quality)
        heatmap_bytes = encode_jpeg(_heatmap_to_uint8(heatmap), quality)
    else:
        if image.shape[0] != image.shape[1]:
            raise ValueError(f"{where}: the stimulus layout stores square images, got {image.shape[:2]}")
        image_bytes = image.astype("<f4").tobytes()
        heatmap_bytes = heatmap.astype("<f4").tobytes()
    return encode_example({"image": image_bytes, "heatmap": heatmap_bytes, "label": np.int64(label)})


def encode_imagenet(image: np.ndarray, label: int, quality: int = 95) -> bytes:
    """One serialized ImageNet-style Example (JPEG ``image``, 0-based ``label``; no heatmap)."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must be an HxWx3 uint8 array, got {image.dtype} {image.shape}")
    return encode_example({"image": encode_jpeg(image, quality), "label": np.int64(int(label))})


def _new_temporary(directory: str, prefix: str, temporary: list[str]) -> BinaryIO:
    fd, path = tempfile.mkstemp(dir=directory, prefix=f".tmp-{prefix}-", suffix=".tfrecords")
    temporary.append(path)
    return os.fdopen(fd, "wb")


def _close(handle: BinaryIO) -> None:
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()


def write_shards(serialized: Iterable[bytes], out_dir: str | os.PathLike, shard_size: int, prefix: str) -> list[str]:
    """Write records to ``{prefix}-{i:05d}-of-{n:05d}.tfrecords``; replaces older shards of that prefix."""
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise ValueError(f"shard_size must be a positive integer, got {shard_size!r}")
    if not re.fullmatch(r"[\w.-]+", prefix):
        raise ValueError(f"prefix must be letters, digits, '_', '.' or '-', got {prefix!r}")
    out_dir = os.fspath(out_dir)
    temporary: list[str] = []
    handle = None
    try:
        with output_errors(os.path.join(out_dir, f"{prefix}-*.tfrecords")):
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            for position, record in enumerate(serialized):
                if position % shard_size == 0:
                    if handle is not None:
                        _close(handle)
                    handle = _new_temporary(out_dir, prefix, temporary)
                handle.write(frame_record(record))
            if handle is not None:
                _close(handle)
                handle = None
        if not temporary:
            raise ValueError(f"no examples to write to {out_dir!r}")
        final = [
            os.path.join(out_dir, f"{prefix}-{i:05d}-of-{len(temporary):05d}.tfrecords") for i in range(len(temporary))
        ]
        for source, target in zip(temporary, final):
            replace_from(source, target)
        temporary = []
    finally:
        if handle is not None:
            handle.close()
        for path in temporary:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
    pattern = re.compile(re.escape(prefix) + r"-\d{5}-of-\d{5}\.tfrecords")
    for stale in glob.glob(os.path.join(glob.escape(out_dir), f"{glob.escape(prefix)}-*-of-*.tfrecords")):
        if pattern.fullmatch(os.path.basename(stale)) and stale not in final:
            os.remove(stale)
    return final


def write_clickme(
    examples: Iterable[dict[str, Any]],
    out_dir: str | os.PathLike,
    shard_size: int = 256,
    layout: str = "jpeg",
    prefix: str = "clickme",
    num_classes: int | None = None,
    quality: int = 95,
) -> list[str]:
    """Write examples {"image": (H, W, 3) uint8 (or float in [0, 255]), "heatmap": (H, W) or
    (H, W, 1) uint8 or float (non-negative), "label": int} as ClickMe shards; returns their paths.

    ``layout="jpeg"``: the published training layout (JPEG image, 1-channel JPEG heatmap, JPEG
    ``quality``); ``layout="stimulus"``: raw float32 image and heatmap (square images), the attack
    stimulus layout. A bad example raises ValueError naming its index; ``num_classes`` also bounds
    the labels. An OSError while writing becomes an OutputError naming the shards.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    encoded = (
        encode_clickme(example, layout=layout, where=f"example {i}", num_classes=num_classes, quality=quality)
        for i, example in enumerate(examples)
    )
    return write_shards(encoded, out_dir, shard_size, prefix)


def write_imagenet(
    images: Iterable[np.ndarray],
    labels: Iterable[int],
    out_dir: str | os.PathLike,
    shard_size: int = 256,
    prefix: str = "imagenet",
    quality: int = 95,
) -> list[str]:
    """Write ImageNet-style shards (JPEG ``image``, 0-based ``label``, no heatmap) for mixing."""
    encoded = (encode_imagenet(image, label, quality=quality) for image, label in zip(images, labels, strict=True))
    return write_shards(encoded, out_dir, shard_size, prefix)
