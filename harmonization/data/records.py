"""ClickMe and ImageNet-style ``tf.train.Example`` records: encode from numpy, decode in the graph.

Published ClickMe layouts (keys ``image``, ``heatmap``, ``label``):

- ``"jpeg"``: ``image`` a JPEG of HxWx3 uint8, ``heatmap`` a 1-channel JPEG of HxW, ``label`` int64
  (the training and validation shards: 256x256).
- ``"stimulus"``: ``image`` raw little-endian float32 bytes of a square HxWx3 image in [0, 255],
  ``heatmap`` raw float32 bytes of HxWx1, ``label`` int64 (the 1000-image attack set: 224x224).

The layout is recognised per record: JPEG bytes start with FF D8; raw bytes have the length of a
square float32 image (12 H^2) or map (4 H^2). ImageNet-style records (no heatmap) hold a JPEG under
``image`` with a 0-based ``label``, or under ``image/encoded`` with a 1-based ``image/class/label``
(the TF-slim ImageNet shards).

Decoding never raises on a bad record that can be recognised as bad: it returns a non-empty
``problem`` string instead, so the pipeline can name the file and record and then stop or skip.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

LAYOUTS = ("jpeg", "stimulus")
_JPEG_MAGIC = b"\xff\xd8"

_CLICKME_FEATURES = {
    "image": tf.io.RaggedFeature(tf.string),
    "heatmap": tf.io.RaggedFeature(tf.string),
    "label": tf.io.RaggedFeature(tf.int64),
}
_IMAGENET_FEATURES = {
    "image": tf.io.RaggedFeature(tf.string),
    "label": tf.io.RaggedFeature(tf.int64),
    "image/encoded": tf.io.RaggedFeature(tf.string),
    "image/class/label": tf.io.RaggedFeature(tf.int64),
}


# ---------------------------------------------------------------------------------------------
# Encoding (numpy -> serialized Example)
# ---------------------------------------------------------------------------------------------
def _bytes_feature(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int64_feature(value: int) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))


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
    if heatmap.shape != image.shape[:2]:
        raise ValueError(f"{where}: heatmap shape {heatmap.shape} does not match image {image.shape[:2]}")
    if not (np.all(np.isfinite(image)) and np.all(np.isfinite(heatmap))):
        raise ValueError(f"{where}: image or heatmap holds non-finite values")
    if image.size and (image.min() < 0 or image.max() > 255):
        raise ValueError(f"{where}: image values must lie in [0, 255], got [{image.min()}, {image.max()}]")
    if heatmap.size and heatmap.min() < 0:
        raise ValueError(f"{where}: heatmap values must be non-negative, got minimum {heatmap.min()}")
    label = example["label"]
    if isinstance(label, (bool, np.bool_)) or not isinstance(label, (int, np.integer)):
        raise ValueError(f"{where}: label must be an integer, got {label!r}")
    label = int(label)
    if label < 0 or (num_classes is not None and label >= num_classes):
        bound = f" (num_classes={num_classes})" if num_classes is not None else ""
        raise ValueError(f"{where}: label {label} is out of range{bound}")
    return image, heatmap, label


def _heatmap_to_uint8(heatmap: np.ndarray) -> np.ndarray:
    if heatmap.dtype == np.uint8:
        return heatmap
    peak = float(heatmap.max()) if heatmap.size else 0.0
    scaled = heatmap.astype(np.float64) * (255.0 / peak) if peak > 0 else np.zeros(heatmap.shape)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def encode_clickme(
    example: Any, layout: str = "jpeg", where: str = "example", num_classes: int | None = None,
    quality: int = 95,
) -> bytes:
    """One serialized ClickMe ``tf.train.Example`` from a dict {image, heatmap, label}.

    ``jpeg`` layout: the image is stored as a JPEG (uint8, or float rounded to uint8) without chroma
    subsampling, the heatmap as a 1-channel JPEG (a float map is rescaled so its peak is 255).
    ``stimulus`` layout: both as raw float32. Raises ValueError naming ``where`` on bad input.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    image, heatmap, label = _check_example(example, where, num_classes)
    if layout == "jpeg":
        pixels = image if image.dtype == np.uint8 else np.clip(np.rint(image), 0, 255).astype(np.uint8)
        image_bytes = tf.io.encode_jpeg(pixels, quality=quality, chroma_downsampling=False).numpy()
        heatmap_bytes = tf.io.encode_jpeg(_heatmap_to_uint8(heatmap)[..., None], quality=quality).numpy()
    else:
        if image.shape[0] != image.shape[1]:
            raise ValueError(f"{where}: the stimulus layout stores square images, got {image.shape[:2]}")
        image_bytes = image.astype("<f4").tobytes()
        heatmap_bytes = heatmap.astype("<f4").tobytes()
    features = {"image": _bytes_feature(image_bytes), "heatmap": _bytes_feature(heatmap_bytes),
                "label": _int64_feature(label)}
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def encode_imagenet(image: np.ndarray, label: int, quality: int = 95) -> bytes:
    """One serialized ImageNet-style Example (JPEG ``image``, 0-based ``label``; no heatmap)."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must be an HxWx3 uint8 array, got {image.dtype} {image.shape}")
    features = {"image": _bytes_feature(tf.io.encode_jpeg(image, quality=quality).numpy()),
                "label": _int64_feature(int(label))}
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


# ---------------------------------------------------------------------------------------------
# Decoding (in the graph)
# ---------------------------------------------------------------------------------------------
def _first(problems: list[tuple[tf.Tensor, Any]]) -> tf.Tensor:
    """The message of the first true condition, or '' (evaluated back to front)."""
    problem = tf.constant("")
    for condition, message in reversed(problems):
        problem = tf.where(condition, message, problem)
    return problem


def _str(value: tf.Tensor) -> tf.Tensor:
    return tf.strings.as_string(value)


def _raw_side(data: tf.Tensor, channels: int) -> tf.Tensor:
    """The side of a square float32 image of ``channels`` in ``data``, or -1."""
    length = tf.strings.length(data)
    side = tf.cast(tf.round(tf.sqrt(tf.cast(length // (4 * channels), tf.float32))), tf.int32)
    return tf.where(side * side * 4 * channels == length, side, -1)


def _is_jpeg(data: tf.Tensor) -> tf.Tensor:
    return tf.equal(tf.strings.substr(data, 0, 2), _JPEG_MAGIC)


def _decode_pixels(data: tf.Tensor, channels: int) -> tf.Tensor:
    """JPEG or raw square float32 bytes -> float32 (H, W, channels)."""
    def raw() -> tf.Tensor:
        side = _raw_side(data, channels)
        return tf.reshape(tf.io.decode_raw(data, tf.float32, little_endian=True), [side, side, channels])

    def jpeg() -> tf.Tensor:
        return tf.cast(tf.io.decode_jpeg(data, channels=channels), tf.float32)

    return tf.cond(_is_jpeg(data), jpeg, raw)


def _label_problems(labels: tf.Tensor, num_classes: int, key: str) -> tuple[list, tf.Tensor]:
    count = tf.size(labels)
    label = tf.cond(count > 0, lambda: labels[0], lambda: tf.constant(-1, tf.int64))
    problems = [
        (count == 0, f"missing key '{key}'"),
        (count > 1, tf.strings.join([f"'{key}' holds ", _str(count), " values, expected one"])),
        ((label < 0) | (label >= num_classes),
         tf.strings.join(["label ", _str(label), f" is outside [0, {num_classes})"])),
    ]
    return problems, label


def _bytes_problems(values: tf.Tensor, key: str, channels: int) -> tuple[list, tf.Tensor]:
    count = tf.size(values)
    data = tf.cond(count > 0, lambda: values[0], lambda: tf.constant(b""))
    layout_ok = _is_jpeg(data) | (_raw_side(data, channels) > 0)
    expected = "a JPEG" + (" or raw float32 bytes of a square HxWx3 image" if channels == 3
                           else " or raw float32 bytes of a square HxWx1 map")
    problems = [
        (count == 0, f"missing key '{key}'"),
        (count > 1, tf.strings.join([f"'{key}' holds ", _str(count), " values, expected one"])),
        (~layout_ok, tf.strings.join([f"'{key}' is neither {expected} (", _str(tf.strings.length(data)),
                                      " bytes)"])),
    ]
    return problems, data


def _shape_text(tensor: tf.Tensor) -> tf.Tensor:
    shape = tf.shape(tensor)
    return tf.strings.join([_str(shape[0]), "x", _str(shape[1])])


def decode_clickme(serialized: tf.Tensor, num_classes: int) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """Parse one ClickMe record -> (problem, image (H, W, 3), heatmap (H, W, 1), label int64).

    ``problem`` is '' for a good record; otherwise it says what is wrong and image/heatmap are empty.
    An unparseable record or an undecodable JPEG raises (the pipeline catches that per record).
    """
    parsed = tf.io.parse_single_example(serialized, _CLICKME_FEATURES)
    image_problems, image_bytes = _bytes_problems(parsed["image"], "image", 3)
    heatmap_problems, heatmap_bytes = _bytes_problems(parsed["heatmap"], "heatmap", 1)
    label_problems, label = _label_problems(parsed["label"], num_classes, "label")
    problem = _first(image_problems + heatmap_problems + label_problems)

    def decode() -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        image = _decode_pixels(image_bytes, 3)
        heatmap = _decode_pixels(heatmap_bytes, 1)
        finite_image = tf.reduce_all(tf.math.is_finite(image))
        finite_heatmap = tf.reduce_all(tf.math.is_finite(heatmap))
        checks = [
            (tf.reduce_any(tf.shape(image)[:2] != tf.shape(heatmap)[:2]),
             tf.strings.join(["heatmap ", _shape_text(heatmap), " does not match image ",
                              _shape_text(image)])),
            (~finite_image, "image holds non-finite values"),
            (~finite_heatmap, "heatmap holds non-finite values"),
            (finite_image & ((tf.reduce_min(image) < 0.0) | (tf.reduce_max(image) > 255.0)),
             "raw image values lie outside [0, 255]"),
            (finite_heatmap & (tf.reduce_min(heatmap) < 0.0), "heatmap holds negative values"),
        ]
        return _first(checks), image, heatmap

    def skip() -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        return problem, tf.zeros([0, 0, 3]), tf.zeros([0, 0, 1])

    problem, image, heatmap = tf.cond(problem == "", decode, skip)
    return problem, image, heatmap, label


def decode_imagenet(serialized: tf.Tensor, num_classes: int) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """Parse one ImageNet-style record -> (problem, image (H, W, 3), heatmap (H, W, 1) zeros, label).

    Accepts ``image`` + 0-based ``label`` or ``image/encoded`` + 1-based ``image/class/label``.
    """
    parsed = tf.io.parse_single_example(serialized, _IMAGENET_FEATURES)
    slim = tf.size(parsed["image/encoded"]) > 0
    values = tf.cond(slim, lambda: parsed["image/encoded"], lambda: parsed["image"])
    labels = tf.cond(slim, lambda: parsed["image/class/label"] - 1, lambda: parsed["label"])
    count = tf.size(values)
    data = tf.cond(count > 0, lambda: values[0], lambda: tf.constant(b""))
    label_problems, label = _label_problems(labels, num_classes, "label")
    problem = _first([
        (count == 0, "missing key 'image' (or 'image/encoded')"),
        (count > 1, "'image' holds several values, expected one"),
        (~_is_jpeg(data), "'image' is not a JPEG"),
    ] + label_problems)

    def decode() -> tuple[tf.Tensor, tf.Tensor]:
        image = tf.cast(tf.io.decode_jpeg(data, channels=3), tf.float32)
        return image, tf.zeros_like(image[..., :1])

    image, heatmap = tf.cond(problem == "", decode,
                             lambda: (tf.zeros([0, 0, 3]), tf.zeros([0, 0, 1])))
    return problem, image, heatmap, label
