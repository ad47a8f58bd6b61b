"""The seven harmonized models the reference library publishes, loaded as Keras 3 pixel models.

Files: ``https://storage.googleapis.com/serrelab/prj_harmonization/models/<file>``, fetched by the
user (nothing here downloads). Every one takes RGB at 224x224, channels-last, scaled to [0, 1] and
then ImageNet mean / std normalised (docs/published-zoo.md); :func:`load_published` puts exactly
that into the pixel model's ``preprocess`` and the file's network into ``backbone`` (logits out),
so the model is fed [0, 255] pixels like every other pixel model here.

Reported figures are read off the reference library's plot (``docs/assets/imagenet_results.png``
in serre-lab/Harmonization; top-1 on ImageNet validation, ClickMe human feature alignment score in
%), about +-0.5 points: a figure, not a table. None is given for ConvNeXt, MaxViT and LeViT.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass

import keras

from harmonization.model_names import BACKBONE
from harmonization.models.kecam import KECAM
from harmonization.models.legacy_full import layer_names_of, load_full_model
from harmonization.models.legacy_h5 import (
    LegacyFile,
    ModelFileError,
    assign_by_name,
    layer_variables,
    read_legacy_h5,
)
from harmonization.models.pixel import assemble, imagenet_normalize
from harmonization.models.vit import as_vit_variables, vit_network, vit_shape_of, vit_variables

URL = "https://storage.googleapis.com/serrelab/prj_harmonization/models/{file}"


@dataclass(frozen=True)
class Published:
    """One published file: where it is, what it holds, what the reference reports for it."""

    name: str
    file: str
    source: str  # how the reference builds the network
    parameters: int  # of the reference constructor with its 1000-class head (counted by the fixture writer)
    reported_top1: float | None  # percent, read off the reference's figure
    reported_alignment: float | None  # ClickMe alignment score, percent, same figure
    control: str  # the same architecture without harmonization (keras.applications / timm)
    signatures: tuple[tuple[str, ...], ...] = ()  # a full-model file has all layer names of one of them

    @property
    def url(self) -> str:
        return URL.format(file=self.file)

    @property
    def approximate_megabytes(self) -> float:
        """float32 weights only (a file may also hold optimizer state): a size to expect."""
        return self.parameters * 4 / 1e6


PUBLISHED = {
    entry.name: entry
    for entry in (
        Published(
            "vit_b16",
            "vit-b16_harmonized.h5",
            "vit_keras 0.1.x vit_b16(activation='linear'), weights only",
            86_567_656,
            75.7,
            73.0,
            "timm vit_base_patch16_224.orig_in21k_ft_in1k",
        ),
        Published(
            "vgg16",
            "vgg16_harmonized.h5",
            "tf.keras 2 full model (VGG16, include_top, linear head)",
            138_357_544,
            69.3,
            62.0,
            "keras.applications.VGG16 / timm vgg16.tv_in1k",
            (("block1_conv1", "block5_conv3", "fc1", "fc2"),),
        ),
        Published(
            "resnet50v2",
            "resnet50v2_harmonized.h5",
            "tf.keras 2 full model (a ResNet-50; v1 or v2 read from the file)",
            25_613_800,
            77.2,
            45.0,
            "keras.applications.ResNet50V2 / timm resnetv2_50",
            (("conv1_conv", "conv5_block3_out"), ("res2a_branch2a", "res5c_branch2c")),
        ),  # Keras >= 2.2.3 / older names
        Published(
            "efficientnetb0",
            "efficientnetB0_harmonized.h5",
            "efficientnet 1.1 package full model (swish, FixedDropout, softmax head)",
            5_330_564,
            77.8,
            45.0,
            "keras.applications.EfficientNetB0 / timm efficientnet_b0",
            (("stem_conv", "block1a_dwconv", "top_conv"),),
        ),
        Published(
            "convnext_tiny",
            "convnext_tiny_harmonized.h5",
            "kecam ConvNeXtTiny(classifier_activation=None), weights only",
            28_589_128,
            None,
            None,
            "keras.applications.ConvNeXtTiny / timm convnext_tiny",
        ),
        Published(
            "maxvit_tiny",
            "maxvit_tiny_harmonized.h5",
            "kecam MaxViT_Tiny(classifier_activation=None), weights only",
            30_964_144,
            None,
            None,
            "timm maxvit_tiny_tf_224",
        ),
        Published(
            "levit128",
            "levit_small_harmonized.h5",
            "kecam LeViT128(classifier_activation=None, use_distillation=False), weights only",
            8_876_008,
            None,
            None,
            "timm levit_128",
        ),
    )
}
PUBLISHED_NAMES = tuple(PUBLISHED)


def _vit_backbone(stored: LegacyFile) -> keras.Model:
    shape = vit_shape_of(stored)
    inputs = keras.Input((shape["image_size"], shape["image_size"], 3), name="preprocessed")
    network = keras.Model(
        inputs,
        vit_network(
            inputs,
            shape["num_classes"],
            shape["num_layers"],
            shape["hidden_size"],
            shape["num_heads"],
            shape["mlp_dim"],
        ),
        name=BACKBONE,
    )
    variables = vit_variables(network)
    assign_by_name(variables, as_vit_variables(stored, variables))
    return network


def _full_backbone(entry: Published) -> Callable[[LegacyFile], keras.Model]:
    def load(stored: LegacyFile) -> keras.Model:
        found = layer_names_of(stored)
        if stored.config is not None and not any(set(names) <= found for names in entry.signatures):
            model_name = stored.config.get("config", {}).get("name", "?")
            missing = sorted(set(entry.signatures[0]) - found)[0]
            raise ModelFileError(
                f"model file {stored.path}: holds a model named {model_name!r}, not {entry.name} (no layer {missing!r})"
            )
        return load_full_model(stored)

    return load


def _underscored(stored: LegacyFile) -> LegacyFile:
    """The file's weights with "/" in layer names read as "_" (Keras 3 refuses "/" in names)."""
    weights = {}
    for key, array in stored.weights.items():
        layer = max((name for name in stored.layer_names if key.startswith(name + "/")), key=len)
        weights[layer.replace("/", "_") + key[len(layer) :]] = array
    return LegacyFile(stored.path, stored.config, stored.layer_names, weights)


def _kecam_backbone(name: str, image_size: int) -> Callable[[LegacyFile], keras.Model]:
    """The kecam re-implementation, its depth per stage and classes read off the file's layer names."""
    kecam = KECAM[name]

    def load(stored: LegacyFile) -> keras.Model:
        names = [layer.replace("/", "_") for layer in stored.layer_names]  # kecam's "/" -> "_"
        blocks = [tuple(map(int, found.groups())) for found in map(re.compile(kecam.block).match, names) if found]
        if stored.config is not None or not blocks:
            raise ModelFileError(
                f"model file {stored.path}: not a kecam {name} weights file "
                f"(its layers: {', '.join(stored.layer_names[:6])}, ...)"
            )
        depths = [max(b for s, b in blocks if s == stage) for stage in sorted({s for s, _ in blocks})]
        head = next(f"{layer}/kernel" for layer in reversed(stored.layer_names) if f"{layer}/kernel" in stored.weights)
        try:
            network = kecam.build()(
                num_classes=int(stored.weights[head].shape[-1]), image_size=image_size, depths=depths
            )
        except ValueError as error:
            raise ModelFileError(f"model file {stored.path}: not a {name} file ({error})") from None
        assign_by_name(layer_variables(network), _underscored(stored))
        return keras.Model(network.input, network.output, name=BACKBONE)

    return load


def _backbone_loader(name: str, image_size: int) -> Callable[[LegacyFile], keras.Model]:
    if name == "vit_b16":
        return _vit_backbone
    if name in KECAM:
        return _kecam_backbone(name, image_size)
    return _full_backbone(PUBLISHED[name])


def load_published(name: str, path: str | os.PathLike, image_size: int = 224) -> keras.Model:
    """The published harmonized model ``name`` from ``path`` (any file name) as a pixel model.

    The result takes RGB pixels in [0, 255] (N, 224, 224, 3) and returns logits; its
    ``preprocess`` is the published x / 255 and ImageNet mean / std. Weights are matched by their
    stored names and shapes, all of them: a file of another architecture, a truncated file or a
    missing one raises an error naming the file and what is wrong. The input size is the file's
    own where it fixes one (ViT's position embeddings, a full model's input); ``image_size``
    (published: 224) builds the kecam networks, whose weights alone do not fix it. Depths and
    classes are read off the file.
    """
    if name not in PUBLISHED:
        raise ValueError(f"unknown published model {name!r}; known: {', '.join(PUBLISHED_NAMES)}")
    stored = read_legacy_h5(path)
    backbone = _backbone_loader(name, int(image_size))(stored)
    shape = backbone.inputs[0].shape
    if len(shape) != 4 or shape[1] is None or shape[1] != shape[2] or shape[3] != 3:
        raise ModelFileError(f"model file {stored.path}: input {tuple(shape)}, expected (N, S, S, 3)")
    return assemble(f"{name}_harmonized", imagenet_normalize(), backbone, int(shape[1]))


def zoo_table() -> list[dict]:
    """One row per published file: name, file, URL, expected size, source, reported figures, control."""
    return [
        {
            "name": e.name,
            "file": e.file,
            "url": e.url,
            "parameters": e.parameters,
            "approximate_megabytes": round(e.approximate_megabytes),
            "source": e.source,
            "reported_top1": e.reported_top1,
            "reported_alignment": e.reported_alignment,
            "control": e.control,
        }
        for e in PUBLISHED.values()
    ]
