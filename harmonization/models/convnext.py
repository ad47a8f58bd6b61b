"""ConvNeXt-Tiny in Keras 3 with the layer names and weight order of keras-cv-attention-models.

The published ``convnext_tiny_harmonized.h5`` holds the weights of kecam 1.3.10's
``ConvNeXtTiny(classifier_activation=None, pretrained=None)``, written under tf.keras 2; kecam does
not run on Keras 3, so the network is re-implemented here (docs/architecture.md). Input: an
ImageNet mean/std-normalised NHWC image; output: logits.

Layout: a 4x4 stride-4 patch stem with layer norm, four stages of blocks (7x7 depthwise conv, layer
norm, 4x Dense with exact GELU, Dense, per-channel layer scale, stochastic depth, residual add), a
layer norm and 2x2 stride-2 conv between stages, then global average pooling, layer norm, Dense.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers

LAYER_NORM_EPSILON = 1e-6
TINY_DEPTHS = (3, 3, 9, 3)
TINY_WIDTHS = (96, 192, 384, 768)


@keras.saving.register_keras_serializable(package="harmonization")
class LayerScale(layers.Layer):
    """Multiplies the last axis by a learned vector (kecam's ``ChannelAffine`` without bias)."""

    def __init__(self, initial_value: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        self.initial_value = initial_value

    def build(self, input_shape):
        self.scale = self.add_weight(
            name="weight", shape=(input_shape[-1],), initializer=keras.initializers.Constant(self.initial_value)
        )

    def call(self, inputs):
        return inputs * self.scale

    def get_config(self) -> dict:
        return {**super().get_config(), "initial_value": self.initial_value}


def _layer_norm(x, name: str):
    return layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name=name + "ln")(x)


def _block(x, width: int, drop_rate: float, name: str):
    deep = layers.ZeroPadding2D(3, name=name + "pad")(x)
    deep = layers.DepthwiseConv2D(7, use_bias=True, name=name + "dw_conv")(deep)
    deep = _layer_norm(deep, name)
    deep = layers.Dense(4 * width, name=name + "up_dense")(deep)
    deep = layers.Activation("gelu", name=name + "gelu")(deep)  # exact (erf) GELU
    deep = layers.Dense(width, name=name + "down_dense")(deep)
    deep = LayerScale(name=name + "gamma")(deep)
    if drop_rate > 0:
        deep = layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=name + "drop")(deep)
    return layers.Add(name=name + "output")([x, deep])


def convnext_tiny(
    num_classes: int = 1000, image_size: int = 224, depths: Sequence[int] | None = None, drop_path_rate: float = 0.1
) -> keras.Model:
    """The ConvNeXt-Tiny network (logits); ``depths`` (blocks per stage, default 3, 3, 9, 3)
    reduces it.

    ``drop_path_rate`` is the stochastic-depth rate of the last block (kecam's default 0.1; it
    rises linearly from 0 at the first block and acts only in training).
    """
    depths = tuple(TINY_DEPTHS if depths is None else depths)
    if len(depths) != len(TINY_WIDTHS) or min(depths) < 1:
        raise ValueError(f"depths must be {len(TINY_WIDTHS)} positive block counts, got {depths}")
    inputs = keras.Input((image_size, image_size, 3))
    x = layers.Conv2D(TINY_WIDTHS[0], 4, strides=4, name="stem_conv")(inputs)
    x = _layer_norm(x, "stem_")
    total, done = sum(depths), 0
    for stage, (depth, width) in enumerate(zip(depths, TINY_WIDTHS), start=1):
        prefix = f"stack{stage}_"
        if stage > 1:
            x = _layer_norm(x, prefix + "downsample_")
            x = layers.Conv2D(width, 2, strides=2, name=prefix + "downsample_conv")(x)
        for block in range(1, depth + 1):
            x = _block(x, width, drop_path_rate * done / total, f"{prefix}block{block}_")
            done += 1
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = _layer_norm(x, "head_")
    head_init = keras.initializers.TruncatedNormal(stddev=0.02)
    outputs = layers.Dense(num_classes, kernel_initializer=head_init, bias_initializer=head_init, name="predictions")(x)
    return keras.Model(inputs, outputs, name="convnext_tiny")
