"""Saliency maps of a Keras network with respect to its (preprocessed) input, on any backend.

Two kinds (docs/method.md, "Saliency" and "Human-alignment evaluation"):
- training: the signed channel mean of d(true-class score)/d(input), from a forward pass in
  training mode, computed so that the enclosing differentiation reaches the parameters through
  it (the second-order path);
- evaluation: |d(score)/d(input)|, max over channels, from a forward pass in inference mode.
The score is the true-class logit; ``centered`` subtracts the mean logit first and ``log_prob``
uses log softmax instead. Both centered and log-prob scores ignore a term that is added to every
class's logit alike, which a network can use to make logit saliency look aligned (the "gaming"
of docs/method.md, "Guards on the claims").

The input gradient is the only backend-specific part (``input_gradients``): a
``tf.GradientTape`` (recorded by an enclosing tape), ``jax.vjp`` (differentiable by an enclosing
``jax.grad``), or ``torch.autograd.grad(..., create_graph=True)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
from keras import ops

SCORES = ("logit", "centered", "log_prob")
TRAINING_SALIENCIES = ("signed", "absolute")
"""How the training saliency reduces the input gradient over RGB: the published signed mean, or
the evaluation's own |gradient| max (no better on the robustness suite: docs/clickme-mini.md)."""

Forward = Callable[[Any], tuple[Sequence[Any], Any]]
"""inputs -> (per-sample score vectors (N,), auxiliary output such as the logits)."""


def class_score(logits, labels, score: str = "logit"):
    """Per-sample score sum(f(logits) * labels) for f in SCORES; labels one-hot or soft (N, C)."""
    logits = ops.cast(logits, "float32")
    if score == "centered":
        logits = logits - ops.mean(logits, axis=-1, keepdims=True)
    elif score == "log_prob":
        logits = ops.log_softmax(logits, axis=-1)
    elif score != "logit":
        raise ValueError(f"score must be one of {SCORES}, got {score!r}")
    return ops.sum(logits * ops.cast(labels, "float32"), axis=-1)


def _tensorflow_input_gradients(forward: Forward, inputs, create_graph: bool) -> tuple[list, Any]:
    import tensorflow as tf

    inputs = tf.convert_to_tensor(inputs)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(inputs)
        scores, aux = forward(inputs)
    gradients = [tape.gradient(score, inputs) for score in scores]
    del tape
    return gradients, aux


def _jax_input_gradients(forward: Forward, inputs, create_graph: bool) -> tuple[list, Any]:
    import jax
    import jax.numpy as jnp

    def scores_of(x):
        scores, aux = forward(x)
        return tuple(scores), aux

    scores, pullback, aux = jax.vjp(scores_of, inputs, has_aux=True)
    gradients = []
    for index in range(len(scores)):
        cotangent = tuple(jnp.ones_like(s) if i == index else jnp.zeros_like(s) for i, s in enumerate(scores))
        gradients.append(pullback(cotangent)[0])
    return gradients, aux


def _torch_input_gradients(forward: Forward, inputs, create_graph: bool) -> tuple[list, Any]:
    import torch

    if not inputs.requires_grad:  # a leaf to differentiate by (the preprocessing is constant)
        inputs = inputs.detach().requires_grad_(True)
    scores, aux = forward(inputs)
    gradients = [
        torch.autograd.grad(ops.sum(score), inputs, create_graph=create_graph, retain_graph=True)[0] for score in scores
    ]
    return gradients, aux


_INPUT_GRADIENTS = {
    "tensorflow": _tensorflow_input_gradients,
    "jax": _jax_input_gradients,
    "torch": _torch_input_gradients,
}


def input_gradients(forward: Forward, inputs, create_graph: bool = True) -> tuple[list, Any]:
    """d score_k / d inputs for each score vector that ``forward(inputs)`` returns, and its aux.

    One forward pass serves every score. With ``create_graph`` the gradients stay differentiable
    by an enclosing differentiation (a tape, ``jax.grad`` or torch autograd).
    """
    backend = keras.backend.backend()
    if backend not in _INPUT_GRADIENTS:
        raise NotImplementedError(f"saliency has no input gradient for the {backend!r} backend")
    return _INPUT_GRADIENTS[backend](forward, inputs, create_graph)


def reduce_channels(gradient, saliency: str = "signed"):
    """(N, H, W, 3) input gradient -> (N, H, W) map: the signed channel mean ("signed") or
    the |gradient| max over channels ("absolute"), as in ``TRAINING_SALIENCIES``."""
    gradient = ops.cast(gradient, "float32")
    if saliency == "signed":
        return ops.mean(gradient, axis=-1)
    if saliency == "absolute":
        return ops.max(ops.abs(gradient), axis=-1)
    raise ValueError(f"saliency must be one of {TRAINING_SALIENCIES}, got {saliency!r}")


def saliency_of(
    forward: Callable[[Any], tuple[Any, Any]], inputs, labels, centered_logits: bool = False, saliency: str = "signed"
) -> tuple[Any, Any, Any]:
    """Training saliency from ``forward(inputs) -> (logits, aux)``: (map (N, H, W), logits, aux).

    ``saliency`` is the channel reduction (``reduce_channels``). Use it where the forward pass has
    state updates to carry out (the JAX step returns the batch-norm updates of ``stateless_call``
    as ``aux``); ``signed_saliency`` otherwise.
    """
    kind = "centered" if centered_logits else "logit"

    def scores(x):
        logits, aux = forward(x)
        return [class_score(logits, labels, kind)], (logits, aux)

    (gradient,), (logits, aux) = input_gradients(scores, inputs)
    return reduce_channels(gradient, saliency), ops.cast(logits, "float32"), aux


def signed_saliency(
    network: Callable[..., Any], inputs, labels, centered_logits: bool = False, training: bool = True
) -> tuple[Any, Any]:
    """Training saliency: signed channel mean (N, H, W) of d score / d input, and the logits.

    One forward pass (in training mode by default, as the method does) serves both. Call it inside
    the outer differentiation: the parameters then get gradient through the saliency.
    """
    saliency, logits, _ = saliency_of(lambda x: (network(x, training=training), None), inputs, labels, centered_logits)
    return saliency, logits


def evaluation_saliency(
    network: Callable[..., Any], inputs, labels, scores: tuple[str, ...] = ("logit", "log_prob")
) -> tuple[dict, Any]:
    """|d score / d input| max over channels (N, H, W) for each score kind, and the logits.

    ``labels`` are class indices (N,) or one-hot (N, C); one inference-mode forward pass serves
    every score kind.
    """
    labels = ops.convert_to_tensor(labels)

    def forward(x):
        logits = network(x, training=False)
        one_hot = labels if len(labels.shape) == 2 else ops.one_hot(labels, ops.shape(logits)[-1])
        return [class_score(logits, one_hot, kind) for kind in scores], logits

    gradients, logits = input_gradients(forward, inputs, create_graph=False)
    maps = {kind: reduce_channels(g, "absolute") for kind, g in zip(scores, gradients)}
    return maps, ops.cast(logits, "float32")
