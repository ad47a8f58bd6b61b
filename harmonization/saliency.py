"""Saliency maps of a Keras network with respect to its (preprocessed) input, in TensorFlow.

Two kinds (docs/method.md, "Saliency" and "Human-alignment evaluation"):
- training: the signed channel mean of d(true-class score)/d(input), from a forward pass in
  training mode, computed so that an enclosing ``tf.GradientTape`` can differentiate through it;
- evaluation: |d(score)/d(input)|, max over channels, from a forward pass in inference mode.
The score is the true-class logit; ``centered`` subtracts the mean logit first and ``log_prob``
uses log softmax instead. Both centered and log-prob scores ignore a term that is added to every
class's logit alike, which a network can use to make logit saliency look aligned (the "gaming"
of docs/method.md, "Guards on the claims").
"""
from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

SCORES = ("logit", "centered", "log_prob")


def class_score(logits: tf.Tensor, labels: tf.Tensor, score: str = "logit") -> tf.Tensor:
    """Per-sample score sum(f(logits) * labels) for f in SCORES; labels one-hot or soft (N, C)."""
    logits = tf.cast(logits, tf.float32)
    if score == "centered":
        logits = logits - tf.reduce_mean(logits, -1, keepdims=True)
    elif score == "log_prob":
        logits = tf.nn.log_softmax(logits, -1)
    elif score != "logit":
        raise ValueError(f"score must be one of {SCORES}, got {score!r}")
    return tf.reduce_sum(logits * tf.cast(labels, tf.float32), -1)


def signed_saliency(
    network: Callable[..., tf.Tensor], inputs: tf.Tensor, labels: tf.Tensor,
    centered_logits: bool = False, training: bool = True,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Training saliency: signed channel mean (N, H, W) of d score / d input, and the logits.

    One forward pass (in training mode by default, as the method does) serves both. Call it inside
    the outer tape: the inner gradient is then recorded, so the parameters get gradient through
    the saliency (the second-order path of the method).
    """
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        logits = network(inputs, training=training)
        scores = class_score(logits, labels, "centered" if centered_logits else "logit")
    gradients = tape.gradient(scores, inputs)
    return tf.reduce_mean(tf.cast(gradients, tf.float32), -1), tf.cast(logits, tf.float32)


def evaluation_saliency(
    network: Callable[..., tf.Tensor], inputs: tf.Tensor, labels: tf.Tensor,
    scores: tuple[str, ...] = ("logit", "log_prob"),
) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
    """|d score / d input| max over channels (N, H, W) for each score kind, and the logits.

    ``labels`` are class indices (N,) or one-hot (N, C); one inference-mode forward pass serves
    every score kind.
    """
    is_one_hot = labels.shape.rank == 2
    with tf.GradientTape(persistent=len(scores) > 1) as tape:
        tape.watch(inputs)
        logits = network(inputs, training=False)
        one_hot = labels if is_one_hot else tf.one_hot(labels, tf.shape(logits)[-1])
        values = {kind: class_score(logits, one_hot, kind) for kind in scores}
    maps = {
        kind: tf.reduce_max(tf.abs(tf.cast(tape.gradient(value, inputs), tf.float32)), -1)
        for kind, value in values.items()
    }
    del tape
    return maps, tf.cast(logits, tf.float32)
