"""Write ClickMe (and ImageNet-style) TFRecord shards, each one atomically."""
from __future__ import annotations

import glob
import os
import re
from typing import Any, Iterable, Iterator

import numpy as np
import tensorflow as tf

from harmonization.data.records import LAYOUTS, encode_clickme, encode_imagenet


def _write_shards(serialized: Iterator[bytes], out_dir: str, shard_size: int, prefix: str) -> list[str]:
    """Write records to ``{prefix}-{i:05d}-of-{n:05d}.tfrecords``; replaces older shards of that prefix.

    Shards are written under temporary names and renamed once all are complete, so a reader never
    sees a partial set; an exception removes the temporary files.
    """
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise ValueError(f"shard_size must be a positive integer, got {shard_size!r}")
    if not re.fullmatch(r"[\w.-]+", prefix):
        raise ValueError(f"prefix must be letters, digits, '_', '.' or '-', got {prefix!r}")
    os.makedirs(out_dir, exist_ok=True)
    temporary: list[str] = []
    writer = None
    try:
        for position, record in enumerate(serialized):
            if position % shard_size == 0:
                if writer is not None:
                    writer.close()
                temporary.append(os.path.join(out_dir, f".{prefix}-{len(temporary):05d}.tmp-{os.getpid()}"))
                writer = tf.io.TFRecordWriter(temporary[-1])
            writer.write(record)
        if writer is not None:
            writer.close()
            writer = None
        if not temporary:
            raise ValueError(f"no examples to write to {out_dir!r}")
        total = len(temporary)
        final = [os.path.join(out_dir, f"{prefix}-{i:05d}-of-{total:05d}.tfrecords") for i in range(total)]
        for source, target in zip(temporary, final):
            os.replace(source, target)
        temporary = []
    finally:
        if writer is not None:
            writer.close()
        for path in temporary:
            if os.path.exists(path):
                os.remove(path)
    pattern = re.compile(re.escape(prefix) + r"-\d{5}-of-\d{5}\.tfrecords")
    for stale in glob.glob(os.path.join(glob.escape(out_dir), f"{glob.escape(prefix)}-*-of-*.tfrecords")):
        if pattern.fullmatch(os.path.basename(stale)) and stale not in final:
            os.remove(stale)
    return final


def write_clickme(
    examples: Iterable[dict[str, Any]], out_dir: str | os.PathLike, shard_size: int = 256,
    layout: str = "jpeg", prefix: str = "clickme", num_classes: int | None = None, quality: int = 95,
) -> list[str]:
    """Write examples {"image": (H, W, 3) uint8 (or float in [0, 255]), "heatmap": (H, W) or
    (H, W, 1) uint8 or float (non-negative), "label": int} as ClickMe shards; returns their paths.

    ``layout="jpeg"``: the published training layout (JPEG image, 1-channel JPEG heatmap, JPEG
    ``quality``); ``layout="stimulus"``: raw float32 image and heatmap (square images). A bad example
    raises ValueError naming its index; ``num_classes`` also bounds the labels.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    encoded = (encode_clickme(example, layout=layout, where=f"example {i}", num_classes=num_classes,
                              quality=quality) for i, example in enumerate(examples))
    return _write_shards(encoded, os.fspath(out_dir), shard_size, prefix)


def write_imagenet(
    images: Iterable[np.ndarray], labels: Iterable[int], out_dir: str | os.PathLike, shard_size: int = 256,
    prefix: str = "imagenet", quality: int = 95,
) -> list[str]:
    """Write ImageNet-style shards (JPEG ``image``, 0-based ``label``, no heatmap) for ``mix_with``."""
    encoded = (encode_imagenet(image, label, quality=quality) for image, label in zip(images, labels, strict=True))
    return _write_shards(encoded, os.fspath(out_dir), shard_size, prefix)
