"""Top-1 / top-5 of a published harmonized model on ImageNet validation, beside the reported figure.

The check a user runs before trusting any result from a published file: a wrong preprocessing
(the thingsvision mistake of skipping the division by 255) shows as an accuracy far below the
reported one. Images are read in either usual layout:

- class folders: ``DIR/<wnid>/<image>.JPEG``, one folder per class; folder ``i`` in sorted order is
  class ``i`` (sorted WordNet ids: the Keras, torchvision and TF-records class order);
- TFRecord shards (a glob, or a folder of ``*.tfrecord*`` files) in either ImageNet-style record
  format that :func:`harmonization.data.records.decode_imagenet` reads.

Every image takes the ImageNet evaluation crop of this project (the central 0.875, bicubic resize;
:func:`harmonization.data.augment.center_crop`) to the model's input size, in [0, 255]: the pixel
model applies its own preprocessing.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator

import keras
import numpy as np
import tensorflow as tf

from harmonization.data.augment import center_crop
from harmonization.data.records import decode_imagenet
from harmonization.models.published import PUBLISHED, load_published

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")


class ImageNetDataError(ValueError):
    """The validation data cannot be used: one line naming the folder or file and the fault."""


def _crop(image: tf.Tensor, size: int) -> np.ndarray:
    return center_crop(tf.cast(image, tf.float32), tf.zeros_like(image[..., :1], tf.float32), size)[0].numpy()


def class_folder_images(root: str, num_classes: int) -> list[tuple[str, int]]:
    """(path, label) of every image under ``root``'s class folders, folder order = class order."""
    folders = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
    if len(folders) != num_classes:
        raise ImageNetDataError(
            f"ImageNet validation folder {root}: {len(folders)} class folders, the model has {num_classes} classes"
        )
    items = [
        (os.path.join(root, folder, name), label)
        for label, folder in enumerate(folders)
        for name in sorted(os.listdir(os.path.join(root, folder)))
        if name.lower().endswith(IMAGE_SUFFIXES)
    ]
    if not items:
        raise ImageNetDataError(f"ImageNet validation folder {root}: no {'/'.join(IMAGE_SUFFIXES)} images")
    return items


def _folder_batches(
    items: list[tuple[str, int]], size: int, batch_size: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    images, labels = [], []
    for path, label in items:
        try:
            image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as error:
            raise ImageNetDataError(f"image {path}: cannot be decoded ({error.message.splitlines()[0]})") from None
        images.append(_crop(image, size))
        labels.append(label)
        if len(images) == batch_size:
            yield np.stack(images), np.array(labels)
            images, labels = [], []
    if images:
        yield np.stack(images), np.array(labels)


def _record_batches(
    paths: list[str], num_classes: int, size: int, batch_size: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    images, labels = [], []
    for path in paths:
        for index, record in enumerate(tf.data.TFRecordDataset(path)):
            problem, image, _, label, _ = decode_imagenet(record, num_classes)
            if problem.numpy():
                raise ImageNetDataError(f"record {index} of {path}: {problem.numpy().decode()}")
            images.append(_crop(image, size))
            labels.append(int(label))
            if len(images) == batch_size:
                yield np.stack(images), np.array(labels)
                images, labels = [], []
    if images:
        yield np.stack(images), np.array(labels)


def validation_batches(
    imagenet_val: str, num_classes: int, image_size: int = 224, batch_size: int = 32
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Batches of (pixels in [0, 255] (N, S, S, 3), labels) from class folders or TFRecord shards."""
    if os.path.isdir(imagenet_val) and any(entry.is_dir() for entry in os.scandir(imagenet_val)):
        return _folder_batches(class_folder_images(imagenet_val, num_classes), image_size, batch_size)
    pattern = os.path.join(imagenet_val, "*.tfrecord*") if os.path.isdir(imagenet_val) else imagenet_val
    paths = sorted(glob.glob(pattern))
    if not paths:
        raise ImageNetDataError(f"ImageNet validation data {imagenet_val}: neither class folders nor TFRecord shards")
    return _record_batches(paths, num_classes, image_size, batch_size)


def top_k_accuracy(
    model: keras.Model, batches: Iterator[tuple[np.ndarray, np.ndarray]], limit: int | None = None
) -> dict:
    """Top-1 and top-5 (top-k with k = min(5, classes)) of a pixel model, and the image count."""
    hits1 = hits5 = count = 0
    for pixels, labels in batches:
        if limit is not None:
            pixels, labels = pixels[: limit - count], labels[: limit - count]
        logits = np.asarray(model(pixels, training=False))
        ranked = np.argsort(-logits, axis=1)[:, : min(5, logits.shape[1])]
        hits1 += int(np.sum(ranked[:, 0] == labels))
        hits5 += int(np.sum(np.any(ranked == labels[:, None], axis=1)))
        count += len(labels)
        if limit is not None and count >= limit:
            break
    if count == 0:
        raise ImageNetDataError("no validation images were read")
    return {"images": count, "top1": 100.0 * hits1 / count, "top5": 100.0 * hits5 / count}


def check_published(name: str, path: str, imagenet_val: str, batch_size: int = 32, limit: int | None = None) -> dict:
    """``harmonize check-accuracy``: top-1 / top-5 of published model ``name`` (file ``path``).

    Also returns the reference's reported top-1 (read off its figure, about +-0.5 points; None
    where it reports none) and the difference; ``limit`` stops after that many images.
    """
    model = load_published(name, path)
    batches = validation_batches(imagenet_val, int(model.output_shape[-1]), int(model.input_shape[1]), batch_size)
    result = top_k_accuracy(model, batches, limit)
    reported = PUBLISHED[name].reported_top1
    return {
        "model": name,
        "file": os.fspath(path),
        "imagenet_val": imagenet_val,
        **result,
        "reported_top1": reported,
        "top1_minus_reported": None if reported is None else result["top1"] - reported,
    }
