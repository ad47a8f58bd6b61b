"""LeViT-128 in Keras 3 with the layer names and weight order of keras-cv-attention-models.

The published ``levit_small_harmonized.h5`` holds the weights of kecam 1.3.10's
``LeViT128(classifier_activation=None, use_distillation=False)``, written under tf.keras 2; kecam
does not run on Keras 3, so the network is re-implemented here (docs/architecture.md). Input: an
ImageNet mean/std-normalised NHWC image; output: logits.

Layout: four 3x3 stride-2 convs (batch norm, hard-swish) take 224 px to 14x14; three stages of
residual attention and MLP blocks over the token grid, with batch norm after every Dense and a
learned per-head bias indexed by the query-key offset (|dx| + |dy|) in every attention; between
stages, an attention whose queries are the stride-2 subsampled grid shrinks it (14 -> 7 -> 4);
then global average pooling, batch norm and Dense.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
import numpy as np
from keras import layers, ops

BATCH_NORM_EPSILON = 1e-5
BATCH_NORM_MOMENTUM = 0.9
STEM_WIDTH = 128
WIDTHS = (256, 384, 384)  # the channels each stage hands on (its last one keeps its width)
HEADS = (4, 8, 12)
DEPTHS_128 = (4, 4, 4)
KEY_DIM = 16
ATTENTION_RATIO = 2  # value width / key width
MLP_RATIO = 2
SUBSAMPLE = 2


def attention_bias_index(query_height: int, query_blocks: int, key_blocks: int) -> np.ndarray:
    """[query, key] index into the learned bias table: |dx| + |dy| * key grid height.

    Queries sit on a grid ``stride`` times coarser than the keys (1 when equal in number); token
    ``n`` of a grid of height ``h`` has coordinates (n % h, n // h), as in kecam.
    """
    stride = int(math.ceil((key_blocks / query_blocks) ** 0.5))
    key_height = query_height * stride
    while key_blocks % key_height:
        key_height -= 1
    query = np.arange(query_blocks)
    key = np.arange(key_blocks)
    query_xy = np.stack([query % query_height, query // query_height], axis=-1)
    key_xy = np.stack([key % key_height, key // key_height], axis=-1)
    offset = np.abs(key_xy[None, :, :] - stride * query_xy[:, None, :])
    return offset[..., 0] + offset[..., 1] * key_height


@keras.saving.register_keras_serializable(package="harmonization")
class AttentionBias(layers.Layer):
    """Adds a learned per-head bias, chosen by query-key offset, to attention scores.

    Input and output: scores [batch, heads, queries, keys]; the weight is [keys, heads] (kecam's
    ``MultiHeadPositionalEmbedding``).
    """

    def __init__(self, query_height: int, **kwargs):
        super().__init__(**kwargs)
        self.query_height = query_height

    def build(self, input_shape):
        _, heads, query_blocks, key_blocks = input_shape
        self.bias = self.add_weight(name="positional_embedding", shape=(key_blocks, heads), initializer="zeros")
        self.index = attention_bias_index(self.query_height, query_blocks, key_blocks)

    def call(self, scores):
        bias = ops.take(self.bias, ops.convert_to_tensor(self.index, dtype="int32"), axis=0)
        return scores + ops.transpose(bias, (2, 0, 1))

    def get_config(self) -> dict:
        return {**super().get_config(), "query_height": self.query_height}


def _batch_norm(x, name: str, zero_gamma: bool = False):
    return layers.BatchNormalization(
        momentum=BATCH_NORM_MOMENTUM,
        epsilon=BATCH_NORM_EPSILON,
        gamma_initializer="zeros" if zero_gamma else "ones",
        name=name + "bn",
    )(x)


def _hard_swish(x, name: str):
    return layers.Activation("hard_swish", name=name + "hard_swish")(x)


def _dense_bn(x, units: int, name: str, dense_name: str):
    x = layers.Dense(units, use_bias=False, name=name + dense_name)(x)
    return _batch_norm(x, name + dense_name + "_")


def _attend(query, key, value, height: int, width: int, out_width: int, name: str, residual: bool):
    """Attention with the offset bias, hard-swish, Dense to ``out_width`` and batch norm.

    query, value: [b, heads, height * width, d]; key: [b, heads, d, tokens]. The batch norm's
    scale starts at 0 in a ``residual`` branch (the block starts as the identity) and at 1
    otherwise, as in the original LeViT; kecam starts both at 0, which makes a new network's
    output and input gradient exactly 0 (the weight layout is the same).
    """
    # Divided, not multiplied: in Keras 3.15 a KerasTensor times a Python float is marked sparse.
    scores = (query @ key) / float(query.shape[-1]) ** 0.5
    scores = AttentionBias(query_height=height, name=name + "attn_pos")(scores)
    scores = layers.Softmax(axis=-1, name=name + "attention_scores")(scores)
    output = ops.transpose(scores @ value, (0, 2, 1, 3))
    output = ops.reshape(output, (-1, height, width, output.shape[2] * output.shape[3]))
    output = layers.Dense(out_width, use_bias=False, name=name + "out")(_hard_swish(output, name))
    return _batch_norm(output, name + "out_", zero_gamma=residual)


def _attention(x, heads: int, out_width: int, name: str):
    """Self-attention over the token grid (the residual branch of a block)."""
    _, height, width, _ = x.shape
    per_head = (ATTENTION_RATIO + 2) * KEY_DIM
    qkv = _dense_bn(x, heads * per_head, name, "qkv")
    qkv = ops.reshape(qkv, (-1, height * width, heads, per_head))
    query, key, value = ops.split(qkv, [KEY_DIM, 2 * KEY_DIM], axis=-1)
    query = ops.transpose(query, (0, 2, 1, 3))
    key = ops.transpose(key, (0, 2, 3, 1))
    value = ops.transpose(value, (0, 2, 1, 3))
    return _attend(query, key, value, height, width, out_width, name, residual=True)


def _subsampling_attention(x, heads: int, out_width: int, name: str):
    """Attention whose queries are the grid subsampled by 2: shrinks it and widens the channels."""
    _, height, width, _ = x.shape
    ratio = ATTENTION_RATIO * SUBSAMPLE
    query = x[:, ::SUBSAMPLE, ::SUBSAMPLE, :]
    query_height, query_width = query.shape[1], query.shape[2]
    query = _dense_bn(query, heads * KEY_DIM, name, "q")
    query = ops.reshape(query, (-1, query_height * query_width, heads, KEY_DIM))
    query = ops.transpose(query, (0, 2, 1, 3))
    key_value = _dense_bn(x, heads * (ratio + 1) * KEY_DIM, name, "kv")
    key_value = ops.reshape(key_value, (-1, height * width, heads, (ratio + 1) * KEY_DIM))
    key, value = ops.split(key_value, [KEY_DIM], axis=-1)
    key = ops.transpose(key, (0, 2, 3, 1))
    value = ops.transpose(value, (0, 2, 1, 3))
    return _attend(query, key, value, query_height, query_width, out_width, name, residual=False)


def _mlp(x, name: str):
    width = x.shape[-1]
    deep = layers.Dense(width * MLP_RATIO, use_bias=False, name=name + "1_dense")(x)
    deep = _hard_swish(_batch_norm(deep, name + "1_"), name + "1_")
    deep = layers.Dense(width, use_bias=False, name=name + "2_dense")(deep)
    deep = _batch_norm(deep, name + "2_")
    return layers.Add(name=name + "add")([x, deep])


def _stem(x):
    for index, divisor in enumerate((8, 4, 2, 1), start=1):
        name = f"stem_{index}_"
        x = layers.ZeroPadding2D(1, name=name + "pad")(x)
        x = layers.Conv2D(STEM_WIDTH // divisor, 3, strides=2, use_bias=False, name=name + "conv")(x)
        x = _batch_norm(x, name)
        if index < 4:
            x = _hard_swish(x, name)
    return x


def levit128(num_classes: int = 1000, image_size: int = 224, depths: Sequence[int] | None = None) -> keras.Model:
    """The LeViT-128 network without distillation head (logits); ``depths`` (blocks per stage,
    default 4, 4, 4) reduces it."""
    depths = tuple(DEPTHS_128 if depths is None else depths)
    if len(depths) != len(HEADS) or min(depths) < 1:
        raise ValueError(f"depths must be {len(HEADS)} positive block counts, got {depths}")
    inputs = keras.Input((image_size, image_size, 3))
    x = _stem(inputs)
    for stage, (depth, heads, out_width) in enumerate(zip(depths, HEADS, WIDTHS), start=1):
        prefix = f"stack{stage}_"
        width = x.shape[-1]
        for block in range(1, depth + 1):
            name = f"{prefix}block{block}_"
            attention = _attention(x, heads, width, name)
            x = _mlp(layers.Add(name=name + "add")([x, attention]), name + "mlp_")
        if out_width != width:
            name = prefix + "downsample_"
            x = _subsampling_attention(x, width // KEY_DIM, out_width, name)
            x = _mlp(x, name + "mlp_")
        x = layers.Activation("linear", name=prefix + "output")(x)
    x = layers.GlobalAveragePooling2D(keepdims=True, name="avg_pool")(x)
    x = layers.Flatten(name="flatten")(_batch_norm(x, "head_"))
    outputs = layers.Dense(num_classes, name="head")(x)
    return keras.Model(inputs, outputs, name="levit128")
