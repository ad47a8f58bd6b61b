"""The neural harmonizer's loss for a ``torch.nn.Module`` in a user's own PyTorch training loop.

``harmonizer_loss`` computes exactly what ``harmonization.training.Harmonizer`` computes on the
torch backend for a timm model (the same ``harmonization.objective.objective_terms``): the network
sees the normalised image (its timm data config's mean and std), resized to its input size, the
saliency is taken with respect to that normalised image and stays differentiable, so
``loss.backward()`` reaches the parameters through it. Keras must run on torch in the process
(``KERAS_BACKEND=torch`` before keras is imported); TensorFlow is not loaded. Use it under
``DistributedDataParallel`` like any loss (docs/pytorch-training.md).
"""

from __future__ import annotations

import keras
import torch
from torch import nn

from harmonization.batches import one_hot_labels
from harmonization.loss import DEFAULT_LEVELS, decays
from harmonization.models.timm_pixel import TimmInput, keras_named_parameters
from harmonization.objective import objective_terms
from harmonization.saliency import TRAINING_SALIENCIES
from harmonization.timm_models import data_config


def decayed_parameters(network: nn.Module) -> list[torch.Tensor]:
    """The trainable parameters the Harmonizer decays: none of normalisation layers, embeddings or
    class tokens (``harmonization.loss.WEIGHT_DECAY_EXCLUDE``)."""
    return [param for name, param in keras_named_parameters(network) if param.requires_grad and decays(name)]


def harmonizer_loss(
    network: nn.Module,
    images: torch.Tensor,
    heatmaps: torch.Tensor,
    labels: torch.Tensor,
    tokens: torch.Tensor | None = None,
    *,
    lambda_harmonization: float = 1.0,
    lambda_weights: float = 1e-5,
    label_smoothing: float = 0.1,
    levels: int = DEFAULT_LEVELS,
    centered_logits: bool = False,
    saliency: str = "signed",
) -> dict[str, torch.Tensor]:
    """The Harmonizer's terms for one batch of a timm ``network`` (or any ``nn.Module`` with a timm
    ``pretrained_cfg``, possibly wrapped in ``DistributedDataParallel``), in training mode.

    ``images`` float (N, H, W, 3) in [0, 255] and ``heatmaps`` (N, H, W, 1) as
    ``harmonization.inputs`` gives them; ``labels`` class indices (N,) or soft labels (N, C);
    ``tokens`` (N,) 1 where the image has a human map (None: all). Returns {"loss", "ce",
    "harmonization", "weight_decay", "logits"}: loss = ce + lambda_weights * weight_decay +
    lambda_harmonization * harmonization (the Harmonizer with ``lambda_schedule="linear"`` and no
    ramp; a schedule is the caller's: pass this step's weight). The weight decay is sum(w^2)/2 over
    ``decayed_parameters``.
    """
    if keras.backend.backend() != "torch":
        raise RuntimeError(
            f"harmonizer_loss needs Keras on torch (KERAS_BACKEND=torch before keras is "
            f"imported), not {keras.backend.backend()!r}"
        )
    if saliency not in TRAINING_SALIENCIES:
        raise ValueError(f"saliency must be one of {', '.join(TRAINING_SALIENCIES)}, got {saliency!r}")
    inner = network.module if isinstance(network, nn.parallel.DistributedDataParallel) else network
    config = data_config(inner)
    mean = torch.tensor(config["mean"], dtype=torch.float32, device=images.device) * 255.0
    std = torch.tensor(config["std"], dtype=torch.float32, device=images.device) * 255.0
    # the wrapper (not ``inner``) runs, so DistributedDataParallel sees the forward pass
    forward_network = TimmInput(network, config["input_size"], config["interpolation"])
    num_classes = inner.num_classes if labels.ndim == 1 else labels.shape[-1]
    network.train()
    terms = objective_terms(
        lambda inputs: (forward_network(inputs), None),
        (images.float() - mean) / std,
        one_hot_labels(labels, num_classes),
        heatmaps.float(),
        torch.ones(len(images), device=images.device) if tokens is None else tokens.float(),
        decayed_parameters(inner),
        harmonize=lambda_harmonization > 0,
        lambda_harmonization=lambda_harmonization,
        lambda_weights=lambda_weights,
        levels=levels,
        label_smoothing=label_smoothing,
        centered_logits=centered_logits,
        saliency=saliency,
    )
    return {name: terms[name] for name in ("loss", "ce", "harmonization", "weight_decay", "logits")}
