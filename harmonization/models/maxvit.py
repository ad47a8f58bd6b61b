"""MaxViT-Tiny in Keras 3 with the weight order of keras-cv-attention-models.

The published ``maxvit_tiny_harmonized.h5`` holds the weights of kecam 1.3.10's
``MaxViT_Tiny(classifier_activation=None, pretrained=None)``, written under tf.keras 2; kecam does
not run on Keras 3, so the network is re-implemented here (docs/architecture.md). kecam's layer
names contain '/', which Keras 3 forbids: here each '/' is '_'. The weighted layers come in kecam's
order, so Keras's legacy ``load_weights`` (by position) loads the file, as does matching by name
with '/' read as '_'.
Input: an ImageNet mean/std-normalised NHWC image; output: logits.

Layout (TensorFlow conventions: "same" padding, batch norm eps 1e-3, tanh-approximated GELU): a
3x3 stride-2 and a 3x3 conv stem, then four stages of blocks, each an MBConv (pre-activation batch
norm, 1x1 expansion x4, 3x3 depthwise conv, squeeze-excite, 1x1 projection; the first block of a
stage halves the grid, with an average-pooled shortcut) followed by attention within 7x7 windows
and attention across a 7x7 grid (pre-norm, relative-position bias per head, then an MLP x4); then
global average pooling, layer norm, Dense + tanh and the classifier Dense.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import layers, ops

BATCH_NORM_EPSILON = 1e-3
BATCH_NORM_MOMENTUM = 0.99
LAYER_NORM_EPSILON = 1e-5
STEM_WIDTH = 64
WIDTHS = (64, 128, 256, 512)
TINY_DEPTHS = (2, 2, 5, 2)
EXPANSION = 4
HEAD_DIM = 32
WINDOW_RATIO = 32  # window side = image side / 32 (7 at 224 px)


def relative_position_index(height: int, width: int) -> np.ndarray:
    """[query, key] index into a ((2h - 1) * (2w - 1))-entry table of relative offsets.

    Token ``n`` of a window of height ``h`` has coordinates (n % h, n // h), as in kecam.
    """
    token = np.arange(height * width)
    xy = np.stack([token % height, token // height], axis=-1)
    offset = xy[:, None, :] - xy[None, :, :]
    return (offset[..., 0] + height - 1) + (offset[..., 1] + width - 1) * (2 * height - 1)


@keras.saving.register_keras_serializable(package="harmonization")
class RelativePositionBias(layers.Layer):
    """Adds a learned per-head bias, chosen by the query-key offset, to attention scores.

    Input and output: scores [batch, heads, tokens, tokens] of a ``height``-row window; the
    weight is [heads, (2h - 1) * (2w - 1)] (kecam's ``MultiHeadRelativePositionalEmbedding``).
    """

    def __init__(self, height: int, **kwargs):
        super().__init__(**kwargs)
        self.height = height

    def build(self, input_shape):
        _, heads, tokens, _ = input_shape
        width = tokens // self.height
        self.table = self.add_weight(
            name="positional_embedding", shape=(heads, (2 * self.height - 1) * (2 * width - 1)), initializer="zeros"
        )
        self.index = relative_position_index(self.height, width)

    def call(self, scores):
        index = ops.convert_to_tensor(self.index, dtype="int32")
        return scores + ops.take(self.table, index, axis=1)

    def get_config(self) -> dict:
        return {**super().get_config(), "height": self.height}


def _batch_norm(x, name: str):
    return layers.BatchNormalization(momentum=BATCH_NORM_MOMENTUM, epsilon=BATCH_NORM_EPSILON, name=name + "bn")(x)


def _layer_norm(x, name: str):
    return layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name=name + "ln")(x)


def _gelu(x):
    return ops.gelu(x, approximate=True)


def _pointwise(x, filters: int, name: str, use_bias: bool):
    """A 1x1 conv after a zero-size ZeroPadding2D, the layer sequence kecam builds."""
    x = layers.ZeroPadding2D(0, name=name + "pad")(x)
    return layers.Conv2D(filters, 1, use_bias=use_bias, name=name + "conv")(x)


def _squeeze_excite(x, name: str):
    channels = x.shape[-1]  # expanded; the gate's hidden width is a quarter of the block width
    gate = ops.mean(x, axis=(1, 2), keepdims=True)
    gate = layers.Conv2D(channels // (EXPANSION * 4), 1, name=name + "1_conv")(gate)
    gate = layers.Activation("swish", name=name + "swish")(gate)
    gate = layers.Conv2D(channels, 1, name=name + "2_conv")(gate)
    gate = layers.Activation("sigmoid", name=name + "sigmoid")(gate)
    return layers.Multiply(name=name + "out")([x, gate])


def _mbconv(x, width: int, strides: int, name: str):
    shortcut = x
    if strides > 1:
        shortcut = layers.AveragePooling2D(strides, strides=strides, padding="same", name=name + "shortcut_pool")(x)
        if x.shape[-1] != width:
            shortcut = layers.Conv2D(width, 1, name=name + "shortcut_conv")(shortcut)
    deep = _batch_norm(x, name + "preact_")
    deep = _gelu(_batch_norm(_pointwise(deep, width * EXPANSION, name + "expand_", False), name + "expand_"))
    deep = layers.DepthwiseConv2D(3, strides=strides, padding="same", use_bias=False, name=name + "MB_dw_conv")(deep)
    deep = _squeeze_excite(_gelu(_batch_norm(deep, name + "MB_dw_")), name + "se_")
    deep = _pointwise(deep, width, name + "MB_pw_", True)
    return layers.Add(name=name + "output")([shortcut, deep])


def _partition(x, window: int, grid: bool):
    """[b, H, W, c] -> [b * windows, window, window, c]: blocks of adjacent tokens, or (grid)
    tokens H / window apart."""
    _, height, width, channels = x.shape
    rows, cols = height // window, width // window
    if grid:
        x = ops.transpose(ops.reshape(x, (-1, window, rows, width * channels)), (0, 2, 1, 3))
        x = ops.transpose(ops.reshape(x, (-1, window * window, cols, channels)), (0, 2, 1, 3))
    else:
        x = ops.transpose(ops.reshape(x, (-1, window, cols, window * channels)), (0, 2, 1, 3))
    return ops.reshape(x, (-1, window, window, channels))


def _merge(x, height: int, width: int, grid: bool):
    """The inverse of ``_partition`` for a ``height`` x ``width`` grid."""
    _, window, _, channels = x.shape
    rows, cols = height // window, width // window
    if grid:
        x = ops.transpose(ops.reshape(x, (-1, cols, window * window, channels)), (0, 2, 1, 3))
        x = ops.transpose(ops.reshape(x, (-1, rows, window, width * channels)), (0, 2, 1, 3))
    else:
        x = ops.transpose(ops.reshape(x, (-1, cols, window, window * channels)), (0, 2, 1, 3))
    return ops.reshape(x, (-1, height, width, channels))


def _window_attention(x, heads: int, name: str):
    """Multi-head self-attention with relative-position bias inside each window [b, h, w, c]."""
    _, height, width, channels = x.shape
    qkv = layers.Conv2D(3 * channels, 1, name=name + "qkv_conv")(x)
    query, key, value = ops.split(qkv, 3, axis=-1)

    def heads_first(t, keys_last: bool = False):
        t = ops.reshape(t, (-1, height * width, heads, channels // heads))
        return ops.transpose(t, (0, 2, 3, 1) if keys_last else (0, 2, 1, 3))

    query, key, value = heads_first(query), heads_first(key, keys_last=True), heads_first(value)
    # Divided, not multiplied: in Keras 3.15 a KerasTensor times a Python float is marked sparse.
    scores = (query @ key) / float(channels // heads) ** 0.5
    scores = RelativePositionBias(height, name=name + "pos_emb")(scores)
    scores = layers.Softmax(axis=-1, name=name + "attention_scores")(scores)
    output = ops.transpose(scores @ value, (0, 2, 1, 3))
    output = ops.reshape(output, (-1, height, width, channels))
    return layers.Dense(channels, name=name + "output")(output)


def _attention_block(x, window: int, grid: bool, name: str):
    _, height, width, channels = x.shape
    attention = _partition(_layer_norm(x, name + "attn_preact_"), window, grid)
    attention = _window_attention(attention, channels // HEAD_DIM, name + "window_mhsa_")
    attention = _merge(attention, height, width, grid)
    x = layers.Add(name=name + "attn_output")([x, attention])
    mlp = _gelu(layers.Dense(channels * EXPANSION, name=name + "ffn_1_dense")(_layer_norm(x, name + "ffn_preact_")))
    mlp = layers.Dense(channels, name=name + "ffn_2_dense")(mlp)
    return layers.Add(name=name + "ffn_output")([x, mlp])


def maxvit_tiny(num_classes: int = 1000, image_size: int = 224, depths: Sequence[int] | None = None) -> keras.Model:
    """The MaxViT-Tiny network (logits); ``depths`` (blocks per stage, default 2, 2, 5, 2)
    reduces it.

    ``image_size`` must be a multiple of 32 (the window side is image_size / 32); the published
    weights are for 224 px, whose 7x7 windows fix the size of the relative-position tables.
    """
    depths = tuple(TINY_DEPTHS if depths is None else depths)
    if len(depths) != len(WIDTHS) or min(depths) < 1:
        raise ValueError(f"depths must be {len(WIDTHS)} positive block counts, got {depths}")
    if image_size % WINDOW_RATIO:
        raise ValueError(f"image_size must be a multiple of {WINDOW_RATIO}, got {image_size}")
    window = image_size // WINDOW_RATIO
    inputs = keras.Input((image_size, image_size, 3))
    x = layers.Conv2D(STEM_WIDTH, 3, strides=2, padding="same", name="stem_1_conv")(inputs)
    x = _gelu(_batch_norm(x, "stem_1_"))
    x = layers.Conv2D(STEM_WIDTH, 3, padding="same", name="stem_2_conv")(x)
    for stage, (depth, width) in enumerate(zip(depths, WIDTHS), start=1):
        for block in range(1, depth + 1):
            name = f"stack_{stage}_block_{block}_"
            x = _mbconv(x, width, 2 if block == 1 else 1, name + "mbconv_")
            x = _attention_block(x, window, False, name + "block_")
            x = _attention_block(x, window, True, name + "grid_")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dense(WIDTHS[-1], name="features")(_layer_norm(x, "post_"))
    x = layers.Activation("tanh", name="features_tanh")(x)
    outputs = layers.Dense(num_classes, name="predictions")(x)
    return keras.Model(inputs, outputs, name="maxvit_tiny")
