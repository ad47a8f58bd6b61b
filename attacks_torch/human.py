"""Human alignment of any PyTorch pixel model: the evaluation saliency of ``harmonize evaluate``,
scored against the ClickMe maps by the one shared definition (``harmonization.alignment``).

Saliency is taken where ``harmonize evaluate`` takes it, at the model's preprocessed input: for a
:class:`~attacks_torch.models.PixelModel` the network's input (resized, then ``(x - mean) / std``);
for a Keras pixel model run on the torch backend the output of its ``preprocess`` part. The human
map is brought to that grid as the wrapper brings it for the attacks (``PixelModel.resize_maps``).
Every image with a map (not constant) is scored, classified correctly or not; the passes are
counted per image like the search's (:class:`~attacks_torch.models.counting.CountingModel`): one
forward pass and one backward pass per score (the logit and the log-probability).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch

from attacks_torch.models.counting import CountingModel
from attacks_torch.models.pixel import PixelModel
from harmonization.alignment import GAMING_MARGIN, PER_IMAGE, alignment_result, output_activation, per_image_alignment
from harmonization.memory import retain_freed_memory


@dataclass
class HumanAlignment:
    """Per-image human alignment of N images (numpy arrays; NaN measures where an image has no map).

    ``spearman`` (logit saliency), ``spearman_log_prob``, ``dice``, ``iou``; ``mapped`` (the image
    has a human map), ``predictions``, ``correct``; ``logit_maps``, ``log_prob_maps`` and
    ``heatmaps`` (N, H, W) on the saliency's grid; ``logits`` (N, C); ``forward_passes`` and
    ``backward_passes``.
    """

    spearman: np.ndarray
    spearman_log_prob: np.ndarray
    dice: np.ndarray
    iou: np.ndarray
    mapped: np.ndarray
    predictions: np.ndarray
    correct: np.ndarray
    logit_maps: np.ndarray
    log_prob_maps: np.ndarray
    heatmaps: np.ndarray
    logits: np.ndarray
    forward_passes: np.ndarray
    backward_passes: np.ndarray

    def __len__(self) -> int:
        return len(self.spearman)

    @classmethod
    def concatenate(cls, parts: Sequence[HumanAlignment]) -> HumanAlignment:
        """The results of consecutive batches as one."""
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)})


def saliency_parts(model: PixelModel) -> tuple[Callable, Callable]:
    """(images in [0, 1] -> the preprocessed input the saliency is taken at, that input -> logits)."""
    split = getattr(model.network, "saliency_parts", None)
    parts = split() if callable(split) else None
    if parts is None:
        return model.network_input, model.network
    to_input, head = parts
    return (lambda x: to_input(model.network_input(x))), head


def _device(model: PixelModel) -> torch.device:
    tensor = next(iter(model.buffers()), None)
    return torch.device("cpu") if tensor is None else tensor.device


def saliency_maps(
    model: PixelModel, images: torch.Tensor, labels: torch.Tensor, counting: CountingModel | None = None
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """{"logit", "log_prob"}: |d score / d preprocessed input|, max over channels, (N, H, W) on
    the CPU; and the logits (N, C). One forward pass serves both scores, one backward pass each;
    ``counting`` (a CountingModel of the head, see :func:`saliency_parts`) charges them per image."""
    retain_freed_memory()  # again: TensorFlow may have reset it since the import
    to_input, head = saliency_parts(model)
    device = _device(model)
    labels = torch.as_tensor(labels, dtype=torch.int64)
    counting = counting or CountingModel(head, len(labels))
    with torch.enable_grad():
        inputs = to_input(images.to(device)).detach().requires_grad_(True)
        logits = counting(inputs).float()
        top = int(labels.max()) if len(labels) else 0
        if top >= logits.shape[1]:
            raise ValueError(f"model {model.name!r}: labels go up to {top} but the model has {logits.shape[1]} classes")
        rows = labels.to(logits.device)[:, None]
        scores = {
            "logit": logits.gather(1, rows).sum(),
            "log_prob": torch.log_softmax(logits, dim=1).gather(1, rows).sum(),
        }
        maps = {}
        for index, (kind, score) in enumerate(scores.items()):
            (gradient,) = torch.autograd.grad(score, inputs, retain_graph=index + 1 < len(scores))
            maps[kind] = gradient.abs().amax(dim=1).detach().cpu()
    return maps, logits.detach().cpu()


def has_map(heatmaps: torch.Tensor | np.ndarray) -> np.ndarray:
    """(N,) bool: whether each (N, H, W) map holds a human map (is not constant)."""
    flat = np.asarray(heatmaps).reshape(len(heatmaps), -1)
    return ~(flat == flat[:, :1]).all(axis=1) if flat.shape[1] else np.zeros(len(flat), bool)


def human_alignment(
    model: PixelModel, images: torch.Tensor, heatmaps: torch.Tensor, labels: torch.Tensor, percentile: float = 10
) -> HumanAlignment:
    """Per-image human alignment of ``model`` on images (N, 3, H, W) in [0, 1] with their human maps
    (N, H, W) and true classes (N,): the Spearman correlation of each evaluation saliency with the
    map, and Dice and IoU of the logit saliency's and the map's top ``percentile`` % pixels.

    A batch of N gives what N batches of 1 give. :func:`summarize_human` turns the result into the
    numbers ``harmonize evaluate`` reports.
    """
    if images.ndim != 4 or heatmaps.shape != (images.shape[0], *images.shape[2:]) or len(labels) != len(images):
        raise ValueError(
            f"human alignment: expected images (N, 3, H, W), heatmaps (N, H, W) and labels (N,), "
            f"got {tuple(images.shape)}, {tuple(heatmaps.shape)}, {tuple(labels.shape)}"
        )
    _, head = saliency_parts(model)
    counting = CountingModel(head, len(images))
    maps, logits = saliency_maps(model, images, labels, counting)
    grid = maps["logit"].shape[1:]
    targets = model.resize_maps(heatmaps.float().cpu())
    if targets.shape[1:] != grid:
        raise ValueError(
            f"model {model.name!r}: saliency maps {tuple(grid)} and human maps "
            f"{tuple(targets.shape[1:])} differ in size"
        )
    logit_maps, log_prob_maps, targets = maps["logit"].numpy(), maps["log_prob"].numpy(), targets.numpy()
    mapped = has_map(heatmaps.cpu().numpy())
    measured = per_image_alignment(logit_maps[mapped], log_prob_maps[mapped], targets[mapped], percentile)
    per_image = {}
    for key in PER_IMAGE:
        values = np.full(len(images), np.nan)
        values[mapped] = measured[key]
        per_image[key] = values
    predictions = logits.argmax(1).numpy()
    return HumanAlignment(
        **per_image,
        mapped=mapped,
        predictions=predictions,
        correct=predictions == np.asarray(labels.cpu()),
        logit_maps=logit_maps,
        log_prob_maps=log_prob_maps,
        heatmaps=targets,
        logits=logits.numpy(),
        forward_passes=counting.forward_passes.numpy(),
        backward_passes=counting.backward_passes.numpy(),
    )


def summarize_human(
    result: HumanAlignment, num_classes: int, gaming_margin: float = GAMING_MARGIN, labels: np.ndarray | None = None
) -> dict:
    """What ``harmonize evaluate`` reports for these images (``harmonization.alignment.alignment_result``):
    accuracy, near_chance, spearman and spearman_log_prob summaries, alignment scores, Dice, IoU and
    the gaming flag; the per-image measures over the mapped images. ``num_classes``: the head's
    width; with the images' ``labels``, chance is taken from the classes present in them."""
    per_image = {key: getattr(result, key)[result.mapped] for key in PER_IMAGE}
    return alignment_result(
        per_image,
        result.correct,
        int(num_classes),
        gaming_margin,
        labels=labels,
        head_activation=output_activation(np.asarray(result.logits)),
    )
