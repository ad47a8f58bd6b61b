"""Click maps as the lab builds them: per-participant click counts, a flat disc blur applied
twice, resize of the short side and a centre crop.

The blur runs on integer counts with the disc's 0/1 mask, so every blurred participant map is an
exact integer array (the lab's kernel divides by the disc's pixel count, once per pass: the map
is ``blurred / disc_area**2``). Exact integers keep Spearman's ties exact in the ceiling.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import signal

from harmonization.clickme2.filtering import Settings

COUNT_CAP = 255
"""The lab counts clicks per pixel in a uint8 that stops at 255."""


def disc_mask(size: int) -> np.ndarray:
    """The 0/1 disc of diameter ``size``: pixels within (size - 1) / 2 of the centre."""
    centre = (size - 1) / 2
    y, x = np.mgrid[:size, :size]
    return ((x - centre) ** 2 + (y - centre) ** 2 <= centre**2).astype(np.int64)


def kernel_size(settings: Settings, frame: tuple[int, int]) -> int:
    """The disc diameter: ``blur_size`` (made odd), or for maps at an image's native size, scaled
    by its short side over the short side of ``image_shape``, made odd, at most ``max_kernel_size``."""
    if not settings.native_size:
        return settings.blur_size if settings.blur_size % 2 else settings.blur_size + 1
    size = int(np.round(settings.blur_size * min(frame) / min(settings.image_shape)))
    size += 0 if size % 2 else 1
    return min(size, settings.max_kernel_size)


def count_maps(click_lists, frame: tuple[int, int]) -> np.ndarray:
    """(participants, H, W) click counts of clicks inside the frame (x: column, y: row)."""
    height, width = frame
    maps = np.zeros((len(click_lists), height, width), np.int64)
    for index, clicks in enumerate(click_lists):
        points = np.asarray(clicks, np.int64).reshape(-1, 2)
        inside = (points[:, 0] >= 0) & (points[:, 0] < width) & (points[:, 1] >= 0) & (points[:, 1] < height)
        np.add.at(maps[index], (points[inside, 1], points[inside, 0]), 1)
    return np.minimum(maps, COUNT_CAP)


def blur_twice(maps: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Two zero-padded 'same' convolutions of integer maps (..., H, W) with the 0/1 ``mask``,
    each rounded back to the exact integers it must give."""
    blurred = maps
    kernel = mask.astype(np.float64).reshape((1,) * (maps.ndim - 2) + mask.shape)
    for _ in range(2):
        exact = np.rint(signal.fftconvolve(blurred.astype(np.float64), kernel, mode="same", axes=(-2, -1)))
        blurred = np.maximum(exact, 0).astype(np.int64)
    return blurred


def resize_nearest_short_side(maps: np.ndarray, short_side: int) -> np.ndarray:
    """Nearest-neighbour resize of (..., H, W) so the short side is ``short_side`` (the long side
    scaled and truncated), sampling source pixel floor((i + 0.5) * in / out)."""
    height, width = maps.shape[-2:]
    if height <= width:
        size = (short_side, int(short_side * width / height))
    else:
        size = (int(short_side * height / width), short_side)
    if size == (height, width):
        return maps
    rows = np.minimum(((np.arange(size[0]) + 0.5) * height / size[0]).astype(np.int64), height - 1)
    cols = np.minimum(((np.arange(size[1]) + 0.5) * width / size[1]).astype(np.int64), width - 1)
    return maps[..., rows[:, None], cols[None, :]]


def crop_box(shape: tuple[int, int], crop: tuple[int, int]) -> tuple[int, int]:
    """(top, left) of a centred ``crop`` of an image of ``shape`` (rounded as torchvision does)."""
    return int(round((shape[0] - crop[0]) / 2.0)), int(round((shape[1] - crop[1]) / 2.0))


def to_model_frame(maps: np.ndarray, settings: Settings) -> np.ndarray:
    """Maps (..., H, W) resized (nearest) to the short side of ``image_shape``, centre-cropped."""
    maps = resize_nearest_short_side(maps, min(settings.image_shape))
    top, left = crop_box(maps.shape[-2:], settings.center_crop)
    if top < 0 or left < 0:
        raise ValueError(f"center_crop {settings.center_crop} is larger than the maps {maps.shape[-2:]}")
    return maps[..., top : top + settings.center_crop[0], left : left + settings.center_crop[1]]


def image_in_model_frame(image: Image.Image, frame: tuple[int, int], settings: Settings) -> np.ndarray:
    """The RGB image as its map is shown: at ``frame`` (H, W), short side resized to that of
    ``image_shape`` (bilinear), centre-cropped; uint8 (crop H, crop W, 3)."""
    image = image.convert("RGB")
    if image.size != (frame[1], frame[0]):
        image = image.resize((frame[1], frame[0]), Image.BILINEAR)
    height, width = frame
    short = min(settings.image_shape)
    size = (short, int(short * width / height)) if height <= width else (int(short * height / width), short)
    if size != (height, width):
        image = image.resize((size[1], size[0]), Image.BILINEAR)
    top, left = crop_box(size, settings.center_crop)
    return np.asarray(image)[top : top + settings.center_crop[0], left : left + settings.center_crop[1]]


@dataclass(frozen=True)
class ImageMaps:
    """One image's blurred participant maps (exact integers, at the click frame) and disc size."""

    blurred: np.ndarray
    disc_area: int

    @property
    def participants(self) -> int:
        return int(self.blurred.shape[0])

    def mean_map(self) -> np.ndarray:
        """The lab's clickmap: the mean participant count map, blurred twice with the normalised
        disc (H, W) float64, at the click frame."""
        return self.blurred.sum(0) / (self.participants * float(self.disc_area) ** 2)


def build_maps(click_lists, frame: tuple[int, int], settings: Settings) -> ImageMaps | None:
    """Count maps at ``frame``, the participants with at least ``min_clicks`` clicks inside the
    frame, blurred; None when no participant is left."""
    counts = count_maps(click_lists, frame)
    counts = counts[counts.sum((-2, -1)) >= settings.min_clicks]
    if not len(counts):
        return None
    mask = disc_mask(kernel_size(settings, frame))
    return ImageMaps(blur_twice(counts, mask), int(mask.sum()))
