"""The one function vit-keras 0.1.2 could take from tensorflow_addons (exact GELU by default)."""

import tensorflow as tf


def gelu(x, approximate: bool = True):
    """tensorflow_addons.activations.gelu, with the same signature and default."""
    return tf.nn.gelu(x, approximate=approximate)
