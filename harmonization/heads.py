"""Whether a network's output is logits, or a softmax / log-softmax of them.

The evaluation's "logit" saliency and its gaming check (``harmonization.evaluation``) need
logits. A log-softmax head gives logits in that sense (softmax and cross-entropy are unchanged;
``small_cnn`` ends in one so that its logit saliency cannot be gamed, docs/method.md), but a
softmax head does not: its "logit" saliency would be a probability saliency. A softmax applied by
the last layer itself (``Dense(activation="softmax")``, ``Activation("softmax")``) is set to the
identity while the saliency is taken (``linear_head``); one that cannot be opened so (a
``Softmax`` layer, a subclassed model) is recognised from the outputs (``harmonization.alignment.output_activation``) and
the result is flagged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import keras

NORMALISED = ("softmax", "log_softmax")
"""The head activations that turn logits into (log-)probabilities."""


def _activation_name(layer) -> str | None:
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    activation = getattr(layer, "activation", None)
    name = getattr(activation, "__name__", None)
    return name if name in NORMALISED else None


def last_layer(network) -> keras.layers.Layer | None:
    """The layer that produces ``network``'s output (inside nested models), or None when unknown
    (a subclassed model, several outputs)."""
    layer = network
    while isinstance(layer, keras.Model):
        layers = getattr(layer, "layers", None)
        if not layers or len(getattr(layer, "outputs", None) or [None]) != 1:
            return None
        layer = layers[-1]
    return layer


def head_activation(network) -> tuple[str | None, keras.layers.Layer | None]:
    """(activation, layer): "softmax" or "log_softmax" and the last layer when that layer applies
    it; (None, None) for a head without one (or one that cannot be seen)."""
    layer = last_layer(network)
    name = None if layer is None else _activation_name(layer)
    return (name, layer) if name else (None, None)


def can_open(layer: keras.layers.Layer | None) -> bool:
    """True when ``layer`` ends in a softmax that can be set to the identity (``linear_head``)."""
    return layer is not None and not isinstance(layer, keras.layers.Softmax) and _activation_name(layer) == "softmax"


@contextlib.contextmanager
def linear_head(layer: keras.layers.Layer | None) -> Iterator[None]:
    """Within the block, ``layer``'s activation is the identity (nothing happens for None)."""
    if layer is None:
        yield
        return
    saved = layer.activation
    layer.activation = keras.activations.linear
    try:
        yield
    finally:
        layer.activation = saved
