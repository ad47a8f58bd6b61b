"""The Harmonizer's objective, written once in ``keras.ops``: cross-entropy, weight decay and the
weighted harmonization term of one batch (docs/method.md, "The loss").

``harmonization.training.Harmonizer`` calls it in every train and test step, on every backend;
``harmonization.torch_loss`` calls it for a ``torch.nn.Module`` in a user's own PyTorch loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import keras
from keras import ops

from harmonization.loss import harmonization_loss, weight_decay
from harmonization.saliency import saliency_of


def objective_terms(
    forward: Callable[[Any], tuple[Any, Any]],
    inputs,
    labels,
    heatmaps,
    tokens,
    decayed: Iterable,
    *,
    harmonize: bool,
    lambda_harmonization: float | Callable[[], Any],
    lambda_weights: float,
    levels: int,
    label_smoothing: float,
    centered_logits: bool,
    saliency: str,
) -> dict:
    """The terms of one batch: {"logits", "ce", "harmonization" (None unless ``harmonize``),
    "weight_decay", "lambda" (None unless ``harmonize``), "loss", "updates"}.

    ``forward(inputs) -> (logits, updates)`` runs the network on preprocessed ``inputs``; labels are
    float (N, C) one-hot or soft; ``decayed`` the parameters that get weight decay.
    ``lambda_harmonization`` is the term's weight, or a callable giving it (evaluated only when
    ``harmonize``). The harmonization term's saliency stays differentiable (the second-order path).
    loss = ce + lambda_weights * weight_decay + lambda * harmonization.
    """
    if harmonize:
        maps, logits, updates = saliency_of(forward, inputs, labels, centered_logits, saliency)
        harmonization = harmonization_loss(maps, heatmaps, tokens, levels)
    else:
        logits, updates = forward(inputs)
        logits, harmonization = ops.cast(logits, "float32"), None
    ce = ops.mean(
        keras.losses.categorical_crossentropy(labels, logits, from_logits=True, label_smoothing=label_smoothing)
    )
    decay = weight_decay(decayed)
    loss = ce + lambda_weights * decay
    weight = None
    if harmonization is not None:
        weight = lambda_harmonization() if callable(lambda_harmonization) else lambda_harmonization
        loss = loss + weight * harmonization
    return {
        "logits": logits,
        "ce": ce,
        "harmonization": harmonization,
        "weight_decay": decay,
        "lambda": weight,
        "loss": loss,
        "updates": updates,
    }
