"""The two published ClickMe record layouts, their detection, and the checks of every record.

Keys ``image``, ``heatmap`` (bytes) and ``label`` (one int64) in both layouts:

- ``"jpeg"``: ``image`` an RGB JPEG of HxWx3, ``heatmap`` a 1-channel JPEG of the raw clicks on the
  same grid (the training and validation shards: 256x256); readers diffuse the clicks
  (:mod:`harmonization.clickme.diffusion`).
- ``"stimulus"``: ``image`` raw little-endian float32 bytes of a square HxWx3 image in [0, 255],
  ``heatmap`` raw float32 bytes of HxWx1, the map as it is used (the 1000-image attack set: 224x224).

Each key is recognised on its own, by its size first: bytes of the length of a square float32
image (12 H^2) or map (4 H^2) are raw, unless they also start (FF D8) and end (FF D9) as a JPEG,
which a valid raw array cannot (its last float would be negative). Other bytes are a JPEG when
they start with FF D8. (A raw pixel of about 128.85 starts with FF D8: magic bytes alone would take
such a record for a broken JPEG.) ImageNet-style records (no heatmap, for mixing) hold
a JPEG under ``image`` with a 0-based ``label``, or under ``image/encoded`` with a 1-based
``image/class/label`` (the TF-slim shards).

``PROBLEMS`` words every way a record can be bad; the numpy reader here and the TensorFlow reader
(which fills the same templates in its graph) give the same text for the same record.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

LAYOUTS = ("jpeg", "stimulus")
JPEG_MAGIC = b"\xff\xd8"
JPEG_END = b"\xff\xd9"
IMAGE_CHANNELS = 3
HEATMAP_CHANNELS = 1
PIXEL_MAX = 255.0
UNIT_RANGE_MAX = 1.0
"""A set whose brightest pixel is at most this was probably stored in [0, 1] instead of [0, 255]."""

IMAGENET_KEYS = {"plain": ("image", "label", 0), "slim": ("image/encoded", "image/class/label", 1)}
"""ImageNet-style layouts: (image key, label key, label offset subtracted to make labels 0-based)."""

PROBLEMS = {
    "missing": "missing key '{key}'",
    "count": "'{key}' holds {count} values, expected one",
    "layout": "'{key}' is neither a JPEG or raw float32 bytes of a square {shape} ({length} bytes)",
    "label": "label {label} is outside [0, {num_classes})",
    "negative label": "label {label} is negative",
    "undecodable": "cannot be parsed or decoded (damaged JPEG or raw bytes, or a key of the wrong type)",
    "shape": "heatmap {heatmap} does not match image {image}",
    "image non-finite": "image holds non-finite values",
    "heatmap non-finite": "heatmap holds non-finite values",
    "range": "image values lie outside [0, 255]",
    "negative heatmap": "heatmap holds negative values",
}
RAW_SHAPES = {IMAGE_CHANNELS: "HxWx3 image", HEATMAP_CHANNELS: "HxWx1 map"}


class RecordProblem(ValueError):
    """One record is bad; the message is one of ``PROBLEMS`` (the caller adds file and record)."""


def problem(name: str, **values: Any) -> str:
    """The text of problem ``name`` with its fields filled in."""
    return PROBLEMS[name].format(**values)


def raw_side(n_bytes: int, channels: int) -> int:
    """The side of the square float32 array of ``channels`` that ``n_bytes`` hold, or -1."""
    side = math.isqrt(n_bytes // (4 * channels))
    return side if side > 0 and side * side * 4 * channels == n_bytes else -1


def is_jpeg(data: bytes, channels: int) -> bool:
    """True when the bytes of a key of ``channels`` are a JPEG (see the module docstring)."""
    return data.startswith(JPEG_MAGIC) and (raw_side(len(data), channels) < 0 or data.endswith(JPEG_END))


def layout_of(data: bytes, channels: int) -> str | None:
    """ "jpeg", "stimulus" (raw square float32) or None for the bytes of one key."""
    if is_jpeg(data, channels):
        return "jpeg"
    return "stimulus" if raw_side(len(data), channels) > 0 else None


@dataclass(frozen=True)
class ClickMeRecord:
    """One decoded record: ``image`` float32 (H, W, 3) in [0, 255], ``heatmap`` float32 (H, W),
    ``label``; ``clicks`` is True when the heatmap holds raw clicks (JPEG) still to be diffused."""

    image: np.ndarray
    heatmap: np.ndarray
    label: int
    clicks: bool


def _single_bytes(features: dict, key: str, channels: int) -> bytes:
    values = features.get(key, [])
    if not isinstance(values, list):
        raise RecordProblem(problem("undecodable"))
    if len(values) != 1:
        raise RecordProblem(problem("missing" if not values else "count", key=key, count=len(values)))
    data = values[0]
    if layout_of(data, channels) is None:
        raise RecordProblem(problem("layout", key=key, shape=RAW_SHAPES[channels], length=len(data)))
    return data


def _label(features: dict, num_classes: int | None) -> int:
    values = features.get("label", [])
    if isinstance(values, list) and not values:
        raise RecordProblem(problem("missing", key="label"))
    if not isinstance(values, np.ndarray) or values.dtype != np.int64:
        raise RecordProblem(problem("undecodable"))
    if values.size != 1:
        raise RecordProblem(problem("count", key="label", count=values.size))
    label = int(values[0])
    if num_classes is not None and not 0 <= label < num_classes:
        raise RecordProblem(problem("label", label=label, num_classes=num_classes))
    if label < 0:
        raise RecordProblem(problem("negative label", label=label))
    return label


def _decode_pixels(data: bytes, channels: int) -> np.ndarray:
    """JPEG (Pillow: libjpeg's accurate integer DCT) or raw square float32 -> float32 (H, W, channels)."""
    if is_jpeg(data, channels):
        try:
            with Image.open(io.BytesIO(data), formats=["JPEG"]) as image:
                pixels = np.asarray(image.convert("RGB" if channels == 3 else "L"), dtype=np.float32)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            raise RecordProblem(problem("undecodable")) from None
        return pixels.reshape(pixels.shape[0], pixels.shape[1], channels)
    side = raw_side(len(data), channels)
    return np.frombuffer(data, dtype="<f4").reshape(side, side, channels).astype(np.float32)


def array_problem(image: np.ndarray, heatmap: np.ndarray) -> str | None:
    """The first problem of a decoded image (H, W, 3) and heatmap (H, W), or None."""
    if heatmap.shape != image.shape[:2]:
        return problem("shape", heatmap="x".join(map(str, heatmap.shape)), image="x".join(map(str, image.shape[:2])))
    finite_image = bool(np.isfinite(image).all())
    finite_heatmap = bool(np.isfinite(heatmap).all())
    if not finite_image:
        return problem("image non-finite")
    if not finite_heatmap:
        return problem("heatmap non-finite")
    if image.size and (image.min() < 0.0 or image.max() > PIXEL_MAX):
        return problem("range")
    if heatmap.size and heatmap.min() < 0.0:
        return problem("negative heatmap")
    return None


def decode_record(features: dict, num_classes: int | None = None) -> ClickMeRecord:
    """Check and decode one parsed ClickMe Example (see ``example.parse_example``).

    ``num_classes`` bounds the labels (None: labels need only be non-negative). Raises
    RecordProblem with the first problem, in the order the TensorFlow reader checks them.
    """
    image_bytes = _single_bytes(features, "image", IMAGE_CHANNELS)
    heatmap_bytes = _single_bytes(features, "heatmap", HEATMAP_CHANNELS)
    label = _label(features, num_classes)
    image = _decode_pixels(image_bytes, IMAGE_CHANNELS)
    heatmap = _decode_pixels(heatmap_bytes, HEATMAP_CHANNELS)[..., 0]
    found = array_problem(image, heatmap)
    if found is not None:
        raise RecordProblem(found)
    return ClickMeRecord(image, heatmap, label, clicks=is_jpeg(heatmap_bytes, HEATMAP_CHANNELS))


def unit_range_warning(brightest: float, where: str) -> str | None:
    """A warning when the brightest pixel of a [0, 255] set is at most 1 (images stored in [0, 1])."""
    if brightest > UNIT_RANGE_MAX:
        return None
    return (
        f"{where}: the brightest pixel is {brightest:g}: these images look like [0, 1] data stored in "
        f"the [0, 255] layout (models would see near-black images); scale them by 255"
    )
