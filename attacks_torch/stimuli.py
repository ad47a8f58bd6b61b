"""ClickMe stimulus sets as torch tensors, read without TensorFlow.

Both published layouts are read, detected per record:
- "stimulus": ``image`` and ``heatmap`` are raw float32 bytes (H, W, 3) in [0, 255] and (H, W, 1);
- "jpeg": ``image`` is an RGB JPEG (or PNG), ``heatmap`` a 1-channel JPEG, decoded by Pillow with
  libjpeg's accurate integer DCT (TensorFlow's default fast DCT differs by a few grey levels; its
  ``dct_method="INTEGER_ACCURATE"`` gives the same pixels); the raw clicks are
  diffused as in the method: bilinear resize to 64x64, blur with a 10x10 Gaussian of sigma 10
  (SAME zero padding), bilinear resize back to the image grid.
``label`` is an int64. Images come out in [0, 1] (pixel / 255), heatmaps on the image's grid.
"""
from __future__ import annotations

import glob
import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from attacks_torch.tfrecord import TFRecordError, iter_records, parse_example
from harmonization.metrics import gaussian_kernel

DIFFUSION_SIZE = 64
DIFFUSION_KERNEL = 10
DIFFUSION_SIGMA = 10.0
_ENCODED_MAGIC = (b"\xff\xd8", b"\x89PNG")


@dataclass
class Stimuli:
    """Images (N, 3, H, W) in [0, 1], labels (N,) int64, heatmaps (N, H, W), ids stable across runs."""

    images: torch.Tensor
    labels: torch.Tensor
    heatmaps: torch.Tensor
    ids: list[str]

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, index: slice | Sequence[int]) -> "Stimuli":
        """The stimuli at ``index`` (a slice or a list of positions), in that order."""
        if isinstance(index, slice):
            return Stimuli(self.images[index], self.labels[index], self.heatmaps[index], self.ids[index])
        positions = torch.as_tensor(list(index), dtype=torch.long)
        return Stimuli(self.images[positions], self.labels[positions], self.heatmaps[positions],
                       [self.ids[i] for i in positions.tolist()])

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the images and heatmaps."""
        return int(self.images.shape[-2]), int(self.images.shape[-1])

    def resized(self, size: int | tuple[int, int]) -> "Stimuli":
        """Images and heatmaps resized to ``size`` by the same bilinear, antialiased resampling."""
        size = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        if size == self.size:
            return self
        images = resize(self.images, size).clamp_(0.0, 1.0)
        heatmaps = resize(self.heatmaps[:, None], size)[:, 0]
        return Stimuli(images, self.labels, heatmaps, self.ids)


def resize(batch: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear, antialiased resize of an (N, C, H, W) float batch: the one resampling used here."""
    if tuple(batch.shape[-2:]) == tuple(size):
        return batch
    return F.interpolate(batch, size=size, mode="bilinear", align_corners=False, antialias=True)


def diffuse(heatmap: torch.Tensor) -> torch.Tensor:
    """The method's diffusion of raw ClickMe clicks (H, W) -> (H, W) on the same grid.

    Bilinear resize (half-pixel centres, no antialiasing, like ``tf.image.resize``) to 64x64,
    convolution with ``gaussian_kernel(10, 10.0)`` with TensorFlow's SAME zero padding
    (4 before, 5 after), bilinear resize back.
    """
    height, width = heatmap.shape
    small = F.interpolate(heatmap[None, None].float(), size=(DIFFUSION_SIZE, DIFFUSION_SIZE),
                          mode="bilinear", align_corners=False)
    kernel = torch.from_numpy(gaussian_kernel(DIFFUSION_KERNEL, DIFFUSION_SIGMA))[None, None]
    before = (DIFFUSION_KERNEL - 1) // 2
    after = DIFFUSION_KERNEL - 1 - before
    blurred = F.conv2d(F.pad(small, (before, after, before, after)), kernel)
    return F.interpolate(blurred, size=(height, width), mode="bilinear", align_corners=False)[0, 0]


def _decode_encoded(data: bytes, channels: int, where: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as image:
            decoded = np.asarray(image.convert("RGB" if channels == 3 else "L"), dtype=np.float32)
    except (OSError, ValueError) as error:
        raise TFRecordError(f"{where}: cannot decode the image bytes ({error})") from None
    return decoded if decoded.ndim == 3 else decoded[..., None]


def _decode_raw(data: bytes, channels: int, where: str, shape: tuple[int, int] | None) -> np.ndarray:
    if len(data) % (4 * channels):
        raise TFRecordError(f"{where}: {len(data)} bytes is not a float32 array with {channels} channel(s)")
    pixels = len(data) // (4 * channels)
    if shape is None:
        side = math.isqrt(pixels)
        if side * side != pixels:
            raise TFRecordError(f"{where}: {pixels} float32 pixels do not make a square HxWx{channels} array")
        shape = (side, side)
    if shape[0] * shape[1] != pixels:
        raise TFRecordError(f"{where}: {pixels} float32 pixels do not match the image grid {shape[0]}x{shape[1]}")
    array = np.frombuffer(data, dtype="<f4").reshape(shape[0], shape[1], channels).astype(np.float32)
    if not np.isfinite(array).all():
        raise TFRecordError(f"{where}: holds NaN or infinite values")
    return array


def _single_bytes(features: dict, key: str, where: str) -> bytes:
    value = features.get(key)
    if value is None:
        raise TFRecordError(f"{where}: missing feature {key!r} (found {sorted(features)})")
    if not isinstance(value, list) or len(value) != 1:
        raise TFRecordError(f"{where}: feature {key!r} must hold one bytes value")
    return value[0]


def _decode_record(features: dict, where: str) -> tuple[np.ndarray, np.ndarray, int]:
    image_bytes = _single_bytes(features, "image", where)
    heatmap_bytes = _single_bytes(features, "heatmap", where)
    label = features.get("label")
    if label is None:
        raise TFRecordError(f"{where}: missing feature 'label' (found {sorted(features)})")
    if not isinstance(label, np.ndarray) or label.dtype != np.int64 or label.size != 1:
        raise TFRecordError(f"{where}: feature 'label' must be one int64")
    if image_bytes.startswith(_ENCODED_MAGIC):
        image = _decode_encoded(image_bytes, 3, f"{where}: image")
        clicks = _decode_encoded(heatmap_bytes, 1, f"{where}: heatmap")[..., 0]
        heatmap = torch.from_numpy(clicks)
        if heatmap.shape != image.shape[:2]:
            heatmap = resize(heatmap[None, None], image.shape[:2])[0, 0]
        heatmap = diffuse(heatmap).numpy()
    else:
        image = _decode_raw(image_bytes, 3, f"{where}: image", None)
        heatmap = _decode_raw(heatmap_bytes, 1, f"{where}: heatmap", image.shape[:2])[..., 0]
    return image, heatmap, int(label[0])


def stimulus_files(path_or_glob: str | os.PathLike | Sequence[str]) -> list[str]:
    """The sorted TFRecord files named by a path, a glob or a list of them; an error if none."""
    patterns = [os.fspath(path_or_glob)] if isinstance(path_or_glob, (str, os.PathLike)) else list(path_or_glob)
    files: list[str] = []
    for pattern in patterns:
        matches = sorted(glob.glob(os.fspath(pattern)))
        if not matches:
            raise FileNotFoundError(f"no stimulus file matches {os.fspath(pattern)!r}")
        files.extend(m for m in matches if os.path.isfile(m))
    if not files:
        raise FileNotFoundError(f"no stimulus file matches {path_or_glob!r}")
    return files


def load_stimuli(path_or_glob: str | os.PathLike | Sequence[str], image_size: int | tuple[int, int] | None = None,
                 limit: int | None = None) -> Stimuli:
    """Read ClickMe TFRecords (either layout) into a Stimuli set.

    Files are read in sorted name order; ids are ``"<file name>:<record index>"``. ``limit`` keeps
    the first records only; ``image_size`` resizes images and heatmaps alike (see Stimuli.resized).
    Every image must share one grid. Raises FileNotFoundError for a glob matching nothing and
    TFRecordError (a ValueError) naming the file and record for corrupt input.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    images, heatmaps, labels, ids = [], [], [], []
    for path in stimulus_files(path_or_glob):
        if limit is not None and len(ids) >= limit:
            break
        name = os.path.basename(path)
        for index, payload in enumerate(iter_records(path)):
            if limit is not None and len(ids) >= limit:
                break
            where = f"{path}: record {index}"
            try:
                features = parse_example(payload)
            except TFRecordError as error:
                raise TFRecordError(f"{where}: {error}") from None
            image, heatmap, label = _decode_record(features, where)
            if images and image.shape != images[0].shape:
                raise TFRecordError(f"{where}: image is {image.shape[0]}x{image.shape[1]}, the first one "
                                    f"{images[0].shape[0]}x{images[0].shape[1]}; a stimulus set shares one size")
            images.append(image)
            heatmaps.append(heatmap)
            labels.append(label)
            ids.append(f"{name}:{index}")
    if not ids:
        raise TFRecordError(f"{path_or_glob}: holds no records")
    stimuli = Stimuli(
        images=torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous().div_(255.0),
        labels=torch.tensor(labels, dtype=torch.int64),
        heatmaps=torch.from_numpy(np.stack(heatmaps)),
        ids=ids,
    )
    return stimuli if image_size is None else stimuli.resized(image_size)
