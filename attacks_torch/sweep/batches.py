"""One model's batches of the sweep: each batch attacked, measured, and written with its maps."""

from __future__ import annotations

import math
import time

import torch
from tqdm.auto import tqdm

from attacks_torch.measures import perturbation_measures
from attacks_torch.models import PixelModel
from attacks_torch.search import find_minimal
from attacks_torch.stimuli import Stimuli
from attacks_torch.sweep.config import SweepConfig
from attacks_torch.sweep.specs import ModelSpec
from attacks_torch.sweep.store import ModelFolder


def check_labels(model: PixelModel, spec: ModelSpec, stimuli: Stimuli) -> None:
    """A stimulus label outside the model's classes would count as misclassified: refuse it instead."""
    top = int(stimuli.labels.max())
    if model.num_classes is not None and top >= model.num_classes:
        raise ValueError(f"stimuli: labels go up to {top}, but model {spec.label!r} has {model.num_classes} classes")


def run_batches(
    model: PixelModel,
    spec: ModelSpec,
    config: SweepConfig,
    stimuli: Stimuli,
    folder: ModelFolder,
    starts: list[int],
    device: torch.device,
    bar: tqdm,
    timing: dict[str, float],
) -> None:
    """Attack the batches that begin at ``starts`` and write their rows and maps into ``folder``;
    adds the attack time to ``timing["attack_s"]``."""
    options = config.resolved_attack_options()
    check_labels(model, spec, stimuli)  # before any attack when the loader knows the classes
    for start in starts:
        batch = stimuli.subset(slice(start, start + config.batch_size))
        images, heatmaps = model.resize_images(batch.images), model.resize_maps(batch.heatmaps)
        torch.manual_seed(config.seed + start)
        began = time.perf_counter()
        result = find_minimal(
            model,
            images.to(device),
            batch.labels.to(device),
            config.attack,
            attack_options=options,
            **config.search_settings(),
        )
        check_labels(model, spec, stimuli)  # else once the first pass has shown the width of the logits
        adversarial = result.adversarial.detach().cpu()
        timing["attack_s"] += time.perf_counter() - began
        measures = perturbation_measures(images, adversarial, heatmaps, result.fooled)
        fooled = result.fooled.tolist()
        for offset in range(min(len(batch), max(config.keep_maps - start, 0))):
            if fooled[offset]:
                delta = (adversarial[offset] - images[offset]).mean(dim=0).abs()
                folder.write_map(start + offset, delta.numpy())
        folder.write_batch(
            start,
            [
                (
                    spec.label,
                    batch.ids[i],
                    int(batch.labels[i]),
                    int(result.clean_pred[i]),
                    bool(result.attacked[i]),
                    fooled[i],
                    float(result.eps[i]) if fooled[i] else math.nan,
                    float(measures["l2"][i]),
                    float(measures["linf"][i]),
                    float(measures["alignment"][i]),
                    config.attack,
                    result.norm,
                )
                for i in range(len(batch))
            ],
        )
        bar.update(len(batch))


def head_width(model: PixelModel, stimuli: Stimuli, device: torch.device) -> int:
    """The width of the model's logits: as its loader read it, else from one forward pass."""
    if model.num_classes is not None:
        return model.num_classes
    with torch.no_grad():
        return int(model(model.resize_images(stimuli.images[:1]).to(device)).shape[1])
