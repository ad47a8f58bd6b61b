"""Checkpoints that robustness researchers have, as pixel models: ``robustness:ARCH:PATH`` (the MadryLab
``robustness`` library) and ``torchvision:ARCH:PATH`` (a plain torchvision state dict).

ARCH is a torchvision ImageNet architecture (``resnet50``, ``wide_resnet50_2``, ...). Both are read
with ``torch.load(weights_only=True)`` or safetensors only (``harmonization.timm_models.read_state_dict``):
a file holding anything but tensors and plain containers is refused, never unpickled.

A ``robustness`` training checkpoint is ``{"model": state dict, "optimizer", "schedule", "epoch", "amp"}``
(older files: "state_dict"). Its state dict is that of a DataParallel-wrapped attacker model: the network
under ``module.model.``, the input normalisation as the buffers ``module.normalizer.new_mean`` and
``new_std`` (shape [3, 1, 1], for [0, 1] pixels), and a second copy of both under ``module.attacker.``.
The network is loaded from ``module.model.*`` and the wrapper applies the mean and std read from the file
(the library clamps its input to [0, 1] first, which pixel-space inputs already are). A torchvision state
dict is normalised with the ImageNet mean and std torchvision's weights use.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
import torchvision

from attacks_torch.models.pixel import PixelModel
from harmonization.model_names import IMAGENET_MEAN, IMAGENET_STD
from harmonization.timm_models import read_state_dict

KINDS = ("robustness", "torchvision")
INPUT_SIZE = (224, 224)
"""torchvision's ImageNet evaluation size (resize 256, centre crop 224 = crop_pct 0.875)."""


def parse_checkpoint_spec(spec: str) -> tuple[str, str, str]:
    """``KIND:ARCH:PATH`` -> (KIND, ARCH, PATH) for KIND in ``KINDS``; a ValueError naming the spec otherwise."""
    kind, _, rest = spec.partition(":")
    arch, sep, path = rest.partition(":")
    if kind not in KINDS or not sep or not arch.strip() or not path.strip():
        raise ValueError(f"model {spec!r}: expected {' or '.join(f'{k}:ARCH:PATH' for k in KINDS)}")
    arch = arch.strip()
    if arch not in torchvision.models.list_models(module=torchvision.models):
        raise ValueError(f"model {spec!r}: {arch!r} is not a torchvision ImageNet architecture")
    return kind, arch, path.strip()


def _prefixed(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}


def split_robustness_state(
    state: Mapping[str, torch.Tensor], where: str
) -> tuple[dict[str, torch.Tensor], tuple[float, ...], tuple[float, ...]]:
    """(network state dict, mean, std) of a ``robustness`` attacker model's state dict (with or
    without DataParallel's ``module.``); a ValueError naming ``where`` when it is not one."""
    outer = "module." if any(key.startswith("module.") for key in state) else ""
    network = _prefixed(state, f"{outer}model.")
    mean, std = (state.get(f"{outer}normalizer.new_{name}") for name in ("mean", "std"))
    if not network or mean is None or std is None:
        raise ValueError(
            f"checkpoint {where}: not a robustness attacker model (expected {outer}model.* "
            f"and {outer}normalizer.new_mean / new_std)"
        )
    if mean.numel() != 3 or std.numel() != 3 or bool((std <= 0).any()):
        raise ValueError(
            f"checkpoint {where}: normalizer mean and std need 3 values each (std > 0), got "
            f"shapes {tuple(mean.shape)} and {tuple(std.shape)}"
        )
    return network, tuple(mean.flatten().tolist()), tuple(std.flatten().tolist())


def _num_classes(state: Mapping[str, torch.Tensor]) -> int:
    """The rows of the last 2-D weight: the classifier head (modules are stored in order)."""
    heads = [value for key, value in state.items() if key.endswith("weight") and value.ndim == 2]
    if not heads:
        raise ValueError("no linear classifier weight")
    return int(heads[-1].shape[0])


def load_checkpoint_model(spec: str) -> PixelModel:
    """The :class:`PixelModel` of a ``robustness:ARCH:PATH`` or ``torchvision:ARCH:PATH`` spec."""
    kind, arch, path = parse_checkpoint_spec(spec)
    where = repr(path)
    state = read_state_dict(path)
    if kind == "robustness":
        state, mean, std = split_robustness_state(state, where)
    else:
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    try:
        network = torchvision.models.get_model(arch, weights=None, num_classes=_num_classes(state))
        network.load_state_dict(state)
    except (RuntimeError, ValueError) as error:
        raise ValueError(
            f"checkpoint {where} does not fit torchvision {arch}: {' '.join(str(error).split())[:300]}"
        ) from error
    return PixelModel(
        network.eval(),
        name=f"{Path(path).stem}",
        input_size=INPUT_SIZE,
        mean=mean,
        std=std,
        interpolation="bilinear",
        crop_pct=0.875,
        num_classes=_num_classes(state),
    )
