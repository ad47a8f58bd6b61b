"""ClickMe and ImageNet-style ``tf.train.Example`` records decoded in the TensorFlow graph.

The layouts, their detection and the wording of every problem are those of
:mod:`harmonization.clickme.layout` (the encoders are ``harmonization.clickme.writer``'s); this
module only runs the same checks as graph operations, so decoding stays inside ``tf.data``.
JPEGs are decoded with libjpeg's accurate integer DCT, the DCT Pillow uses on the torch side, so
both readers see the same pixels.

Decoding never raises on a bad record that can be recognised as bad: it returns a non-empty
``problem`` string instead, so the pipeline can name the file and record and then stop or skip.
"""

from __future__ import annotations

import string
from typing import Any

import tensorflow as tf

from harmonization.clickme.layout import (
    HEATMAP_CHANNELS,
    IMAGE_CHANNELS,
    IMAGENET_KEYS,
    JPEG_END,
    JPEG_MAGIC,
    PIXEL_MAX,
    PROBLEMS,
    RAW_SHAPES,
)
from harmonization.clickme.writer import encode_clickme, encode_imagenet

__all__ = ["decode_clickme", "decode_imagenet", "encode_clickme", "encode_imagenet"]

_PLAIN_IMAGE, _PLAIN_LABEL, _ = IMAGENET_KEYS["plain"]
_SLIM_IMAGE, _SLIM_LABEL, _SLIM_OFFSET = IMAGENET_KEYS["slim"]
_CLICKME_FEATURES = {
    "image": tf.io.RaggedFeature(tf.string),
    "heatmap": tf.io.RaggedFeature(tf.string),
    "label": tf.io.RaggedFeature(tf.int64),
}
_IMAGENET_FEATURES = {
    _PLAIN_IMAGE: tf.io.RaggedFeature(tf.string),
    _PLAIN_LABEL: tf.io.RaggedFeature(tf.int64),
    _SLIM_IMAGE: tf.io.RaggedFeature(tf.string),
    _SLIM_LABEL: tf.io.RaggedFeature(tf.int64),
}


def _text(name: str, **values: Any) -> tf.Tensor:
    """``PROBLEMS[name]`` filled in the graph: tensor fields become strings."""
    parts: list[Any] = []
    for literal, field, _, _ in string.Formatter().parse(PROBLEMS[name]):
        parts.append(literal)
        if field is not None:
            value = values[field]
            if not isinstance(value, tf.Tensor):
                parts.append(str(value))
            else:
                parts.append(value if value.dtype == tf.string else tf.strings.as_string(value))
    return tf.strings.join(parts)


# ---------------------------------------------------------------------------------------------
# Decoding (in the graph)
# ---------------------------------------------------------------------------------------------
def _first(problems: list[tuple[tf.Tensor, Any]]) -> tf.Tensor:
    """The message of the first true condition, or '' (evaluated back to front)."""
    problem = tf.constant("")
    for condition, message in reversed(problems):
        problem = tf.where(condition, message, problem)
    return problem


def _raw_side(data: tf.Tensor, channels: int) -> tf.Tensor:
    """The side of a square float32 image of ``channels`` in ``data``, or -1."""
    length = tf.strings.length(data)
    side = tf.cast(tf.round(tf.sqrt(tf.cast(length // (4 * channels), tf.float32))), tf.int32)
    return tf.where(side * side * 4 * channels == length, side, -1)


def _is_jpeg(data: tf.Tensor, channels: int | None = None) -> tf.Tensor:
    """``layout.is_jpeg`` in the graph (``channels`` None: by the start bytes alone)."""
    magic = tf.equal(tf.strings.substr(data, 0, len(JPEG_MAGIC)), JPEG_MAGIC)
    if channels is None:
        return magic
    tail = tf.maximum(tf.strings.length(data) - len(JPEG_END), 0)
    end = tf.equal(tf.strings.substr(data, tail, len(JPEG_END)), JPEG_END)
    return magic & ((_raw_side(data, channels) < 0) | end)


def _decode_pixels(data: tf.Tensor, channels: int) -> tf.Tensor:
    """JPEG or raw square float32 bytes -> float32 (H, W, channels)."""

    def raw() -> tf.Tensor:
        side = _raw_side(data, channels)
        return tf.reshape(tf.io.decode_raw(data, tf.float32, little_endian=True), [side, side, channels])

    def jpeg() -> tf.Tensor:
        return tf.cast(tf.io.decode_jpeg(data, channels=channels, dct_method="INTEGER_ACCURATE"), tf.float32)

    return tf.cond(_is_jpeg(data, channels), jpeg, raw)


def _label_problems(labels: tf.Tensor, num_classes: int, key: str) -> tuple[list, tf.Tensor]:
    count = tf.size(labels)
    label = tf.cond(count > 0, lambda: labels[0], lambda: tf.constant(-1, tf.int64))
    problems = [
        (count == 0, _text("missing", key=key)),
        (count > 1, _text("count", key=key, count=count)),
        ((label < 0) | (label >= num_classes), _text("label", label=label, num_classes=num_classes)),
    ]
    return problems, label


def _bytes_problems(values: tf.Tensor, key: str, channels: int) -> tuple[list, tf.Tensor]:
    count = tf.size(values)
    data = tf.cond(count > 0, lambda: values[0], lambda: tf.constant(b""))
    layout_ok = _is_jpeg(data, channels) | (_raw_side(data, channels) > 0)
    problems = [
        (count == 0, _text("missing", key=key)),
        (count > 1, _text("count", key=key, count=count)),
        (~layout_ok, _text("layout", key=key, shape=RAW_SHAPES[channels], length=tf.strings.length(data))),
    ]
    return problems, data


def _shape_text(tensor: tf.Tensor) -> tf.Tensor:
    shape = tf.shape(tensor)
    return tf.strings.join([tf.strings.as_string(shape[0]), "x", tf.strings.as_string(shape[1])])


Decoded = tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]


def decode_clickme(serialized: tf.Tensor, num_classes: int) -> Decoded:
    """Parse one ClickMe record -> (problem, image (H, W, 3), heatmap (H, W, 1), label int64, clicks).

    ``problem`` is '' for a good record; otherwise it says what is wrong and image/heatmap are empty.
    ``clicks`` (bool) is True when the heatmap holds raw clicks (the JPEG training layout) still to
    be diffused, False for an already diffused map (the raw float32 stimulus layout).
    An unparseable record or an undecodable JPEG raises (the pipeline catches that per record).
    """
    parsed = tf.io.parse_single_example(serialized, _CLICKME_FEATURES)
    image_problems, image_bytes = _bytes_problems(parsed["image"], "image", IMAGE_CHANNELS)
    heatmap_problems, heatmap_bytes = _bytes_problems(parsed["heatmap"], "heatmap", HEATMAP_CHANNELS)
    label_problems, label = _label_problems(parsed["label"], num_classes, "label")
    problem = _first(image_problems + heatmap_problems + label_problems)

    def decode() -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        image = _decode_pixels(image_bytes, IMAGE_CHANNELS)
        heatmap = _decode_pixels(heatmap_bytes, HEATMAP_CHANNELS)
        finite_image = tf.reduce_all(tf.math.is_finite(image))
        finite_heatmap = tf.reduce_all(tf.math.is_finite(heatmap))
        checks = [
            (
                tf.reduce_any(tf.shape(image)[:2] != tf.shape(heatmap)[:2]),
                _text("shape", heatmap=_shape_text(heatmap), image=_shape_text(image)),
            ),
            (~finite_image, _text("image non-finite")),
            (~finite_heatmap, _text("heatmap non-finite")),
            (finite_image & ((tf.reduce_min(image) < 0.0) | (tf.reduce_max(image) > PIXEL_MAX)), _text("range")),
            (finite_heatmap & (tf.reduce_min(heatmap) < 0.0), _text("negative heatmap")),
        ]
        return _first(checks), image, heatmap

    def skip() -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        return problem, tf.zeros([0, 0, 3]), tf.zeros([0, 0, 1])

    problem, image, heatmap = tf.cond(problem == "", decode, skip)
    return problem, image, heatmap, label, _is_jpeg(heatmap_bytes, HEATMAP_CHANNELS)


def decode_imagenet(serialized: tf.Tensor, num_classes: int) -> Decoded:
    """Parse one ImageNet-style record -> (problem, image (H, W, 3), heatmap (H, W, 1) zeros, label,
    clicks False).

    Accepts ``image`` + 0-based ``label`` or ``image/encoded`` + 1-based ``image/class/label``.
    """
    parsed = tf.io.parse_single_example(serialized, _IMAGENET_FEATURES)
    slim = tf.size(parsed[_SLIM_IMAGE]) > 0
    values = tf.cond(slim, lambda: parsed[_SLIM_IMAGE], lambda: parsed[_PLAIN_IMAGE])
    labels = tf.cond(slim, lambda: parsed[_SLIM_LABEL] - _SLIM_OFFSET, lambda: parsed[_PLAIN_LABEL])
    count = tf.size(values)
    data = tf.cond(count > 0, lambda: values[0], lambda: tf.constant(b""))
    label_problems, label = _label_problems(labels, num_classes, "label")
    problem = _first(
        [
            (count == 0, f"missing key '{_PLAIN_IMAGE}' (or '{_SLIM_IMAGE}')"),
            (count > 1, _text("count", key=_PLAIN_IMAGE, count=count)),
            (~_is_jpeg(data), "'image' is not a JPEG"),
        ]
        + label_problems
    )

    def decode() -> tuple[tf.Tensor, tf.Tensor]:
        image = tf.cast(tf.io.decode_jpeg(data, channels=IMAGE_CHANNELS, dct_method="INTEGER_ACCURATE"), tf.float32)
        return image, tf.zeros_like(image[..., :1])

    image, heatmap = tf.cond(problem == "", decode, lambda: (tf.zeros([0, 0, 3]), tf.zeros([0, 0, 1])))
    return problem, image, heatmap, label, tf.constant(False)
