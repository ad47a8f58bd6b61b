"""Photos shipped with scikit-image and scikit-learn, with their ImageNet labels: a real test set offline."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        return getattr(skimage.data, name)()

    return load


def _sklearn(index: int) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_images

        return load_sample_images().images[index]

    return load


# name -> (loader of a uint8 HxWx3 array, expected ImageNet label, every label a person would accept)
PHOTOS: dict[str, tuple[Callable[[], np.ndarray], int, frozenset[int]]] = {
    "chelsea": (_skimage("chelsea"), 282, frozenset({281, 282})),  # tiger cat (tabby accepted)
    "coffee": (_skimage("coffee"), 967, frozenset({967})),  # espresso
    "rocket": (_skimage("rocket"), 657, frozenset({657})),  # missile
    "china": (_sklearn(0), 698, frozenset({698})),  # palace
    "flower": (_sklearn(1), 985, frozenset({985})),  # daisy
}


class Photos(NamedTuple):
    """Bundled photos: ``images`` (N, 3, size, size) in [0, 1], ``labels`` (N,) int64, ``names``."""

    images: torch.Tensor
    labels: torch.Tensor
    names: list[str]

    @property
    def accepted(self) -> list[frozenset[int]]:
        """Per photo, every ImageNet label a person would accept for it (e.g. tabby or tiger cat)."""
        return [PHOTOS[name][2] for name in self.names]


def _center_crop(array: np.ndarray, size: int, crop_pct: float) -> np.ndarray:
    image = Image.fromarray(array).convert("RGB")
    scale = size / crop_pct / min(image.size)
    width, height = (max(size, round(side * scale)) for side in image.size)
    image = image.resize((width, height), Image.BICUBIC)
    left, top = (width - size) // 2, (height - size) // 2
    return np.asarray(image.crop((left, top, left + size, top + size)))


def bundled_photos(names: list[str] | None = None, size: int = 224, crop_pct: float = 0.875) -> Photos:
    """The bundled photos with their expected ImageNet labels.

    Each photo gets the ImageNet evaluation transform (bicubic resize of the short side to
    ``size / crop_pct``, center crop ``size``). ``names`` picks a subset of :data:`PHOTOS`.
    """
    names = list(PHOTOS) if names is None else list(names)
    unknown = [n for n in names if n not in PHOTOS]
    if unknown:
        raise ValueError(f"unknown bundled photo(s) {unknown}; available: {sorted(PHOTOS)}")
    arrays = [_center_crop(PHOTOS[n][0](), size, crop_pct) for n in names]
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div(255.0).contiguous()
    labels = torch.tensor([PHOTOS[n][1] for n in names], dtype=torch.int64)
    return Photos(images, labels, names)
