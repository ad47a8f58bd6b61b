"""ViT-B/16 in Keras 3 with the weight layout of ``vit_keras`` 0.1.x (the published ViT file).

The reference builds the published model with ``vit_keras.vit.vit_b16(image_size=224,
activation='linear', pretrained=False, include_top=True, pretrained_top=False)``; vit-keras 0.1.x
runs only on tf.keras 2 (it imports tensorflow-addons), so the network is re-implemented here from
core Keras layers plus two small weight-holding layers, computing the same function:
patch embedding (a 16x16 stride-16 convolution), a class token, learned position embeddings,
pre-norm transformer blocks (layer norm eps 1e-6, multi-head self-attention, an MLP with exact
GELU), a final layer norm, the class token's features and a linear head.

Attention uses ``keras.layers.MultiHeadAttention``, whose kernels hold the same numbers as
vit-keras's query / key / value / out ``Dense`` kernels, reshaped by heads (head-major, as
vit-keras splits its features); :func:`vit_variables` names every variable as the file does.
"""

from __future__ import annotations

import math

import keras

from harmonization.models.legacy_h5 import LegacyFile, ModelFileError

PATCH = 16
BLOCK = "Transformer/encoderblock_{}"
ATTENTION = "MultiHeadDotProductAttention_1"


@keras.saving.register_keras_serializable(package="harmonization")
class ClassToken(keras.layers.Layer):
    """Prepends a learned token (weight ``cls``, shape (1, 1, D)) to a (N, T, D) sequence."""

    def build(self, input_shape) -> None:
        self.cls = self.add_weight(shape=(1, 1, input_shape[-1]), initializer="zeros", name="cls")

    def call(self, inputs):
        token = keras.ops.broadcast_to(
            keras.ops.cast(self.cls, inputs.dtype), (keras.ops.shape(inputs)[0], 1, inputs.shape[-1])
        )
        return keras.ops.concatenate([token, inputs], axis=1)

    def compute_output_shape(self, input_shape):
        tokens = None if input_shape[1] is None else input_shape[1] + 1
        return (input_shape[0], tokens, input_shape[2])


@keras.saving.register_keras_serializable(package="harmonization")
class AddPositionEmbs(keras.layers.Layer):
    """Adds learned position embeddings (weight ``pos_embedding``, shape (1, T, D))."""

    def build(self, input_shape) -> None:
        self.pe = self.add_weight(
            shape=(1, input_shape[1], input_shape[2]),
            initializer=keras.initializers.RandomNormal(stddev=0.06),
            name="pos_embedding",
        )

    def call(self, inputs):
        return inputs + keras.ops.cast(self.pe, inputs.dtype)


def _safe(name: str) -> str:
    return name.replace("/", "_")  # Keras 3 refuses "/" in layer names


def vit_network(
    inputs: keras.KerasTensor,
    num_classes: int,
    num_layers: int = 12,
    hidden_size: int = 768,
    num_heads: int = 12,
    mlp_dim: int = 3072,
    dropout: float = 0.1,
) -> keras.KerasTensor:
    """ViT logits for ``inputs`` (N, S, S, 3), S a multiple of 16; defaults: ViT-B/16."""
    size = inputs.shape[1]
    if size is None or size % PATCH or inputs.shape[2] != size:
        raise ValueError(
            f"vit_b16 needs square images whose side is a multiple of {PATCH}, got {tuple(inputs.shape[1:3])}"
        )
    x = keras.layers.Conv2D(hidden_size, PATCH, strides=PATCH, padding="valid", name="embedding")(inputs)
    x = keras.layers.Reshape(((size // PATCH) ** 2, hidden_size))(x)
    x = ClassToken(name="class_token")(x)
    x = AddPositionEmbs(name=_safe("Transformer/posembed_input"))(x)
    for n in range(num_layers):
        block = _safe(BLOCK.format(n))
        y = keras.layers.LayerNormalization(epsilon=1e-6, name=f"{block}_LayerNorm_0")(x)
        y = keras.layers.MultiHeadAttention(num_heads, hidden_size // num_heads, name=f"{block}_{ATTENTION}")(y, y)
        x = keras.layers.Add()([x, keras.layers.Dropout(dropout)(y)])
        y = keras.layers.LayerNormalization(epsilon=1e-6, name=f"{block}_LayerNorm_2")(x)
        y = keras.layers.Dense(mlp_dim, name=f"{block}_Dense_0")(y)
        y = keras.layers.Activation("gelu")(y)  # exact GELU, as vit-keras
        y = keras.layers.Dropout(dropout)(y)
        y = keras.layers.Dense(hidden_size, name=f"{block}_Dense_1")(y)
        x = keras.layers.Add()([x, keras.layers.Dropout(dropout)(y)])
    x = keras.layers.LayerNormalization(epsilon=1e-6, name=_safe("Transformer/encoder_norm"))(x)
    x = keras.layers.Cropping1D((0, (size // PATCH) ** 2))(x)  # the class token's features
    x = keras.layers.Flatten(name="ExtractToken")(x)
    return keras.layers.Dense(num_classes, name="head")(x)


def vit_variables(model: keras.Model) -> dict[str, keras.Variable]:
    """Every weight of a :func:`vit_network` model under its name in a vit-keras 0.1.x file."""
    layers = {layer.name: layer for layer in model.layers}
    names = {
        "embedding/kernel": layers["embedding"].kernel,
        "embedding/bias": layers["embedding"].bias,
        "class_token/cls": layers["class_token"].cls,
        "Transformer/posembed_input/pos_embedding": layers[_safe("Transformer/posembed_input")].pe,
        "head/kernel": layers["head"].kernel,
        "head/bias": layers["head"].bias,
    }
    norm = layers[_safe("Transformer/encoder_norm")]
    names.update({"Transformer/encoder_norm/gamma": norm.gamma, "Transformer/encoder_norm/beta": norm.beta})
    n = 0
    while f"{_safe(BLOCK.format(n))}_Dense_0" in layers:
        block, prefix = _safe(BLOCK.format(n)), BLOCK.format(n)
        attention = layers[f"{block}_{ATTENTION}"]
        for legacy, part in (
            ("query", attention.query_dense),
            ("key", attention.key_dense),
            ("value", attention.value_dense),
            ("out", attention.output_dense),
        ):
            names[f"{prefix}/{ATTENTION}/{legacy}/kernel"] = part.kernel
            names[f"{prefix}/{ATTENTION}/{legacy}/bias"] = part.bias
        for legacy in ("Dense_0", "Dense_1"):
            names[f"{prefix}/{legacy}/kernel"] = layers[f"{block}_{legacy}"].kernel
            names[f"{prefix}/{legacy}/bias"] = layers[f"{block}_{legacy}"].bias
        for legacy in ("LayerNorm_0", "LayerNorm_2"):
            names[f"{prefix}/{legacy}/gamma"] = layers[f"{block}_{legacy}"].gamma
            names[f"{prefix}/{legacy}/beta"] = layers[f"{block}_{legacy}"].beta
        n += 1
    return names


def vit_shape_of(stored: LegacyFile) -> dict[str, int]:
    """The ViT's size read off a vit-keras weights file: image size, depth, widths, classes."""
    weights = stored.weights
    needed = (
        "embedding/kernel",
        "Transformer/posembed_input/pos_embedding",
        "head/kernel",
        f"{BLOCK.format(0)}/Dense_0/kernel",
    )
    if stored.config is not None or not all(name in weights for name in needed):
        raise ModelFileError(
            f"model file {stored.path}: not a vit-keras ViT weights file "
            f"(its layers: {', '.join(stored.layer_names[:6])}, ...)"
        )
    patch, _, _, hidden = weights["embedding/kernel"].shape
    tokens = weights["Transformer/posembed_input/pos_embedding"].shape[1]
    side = math.isqrt(tokens - 1)
    if patch != PATCH or side * side != tokens - 1 or hidden % 64:
        raise ModelFileError(
            f"model file {stored.path}: a ViT with {patch}x{patch} patches, "
            f"{tokens} tokens and width {hidden}; expected ViT-B/16"
        )
    num_layers = sum(1 for name in stored.layer_names if name.startswith("Transformer/encoderblock_"))
    return {
        "image_size": side * PATCH,
        "num_layers": num_layers,
        "hidden_size": int(hidden),
        "num_heads": int(hidden) // 64,
        "mlp_dim": int(weights[f"{BLOCK.format(0)}/Dense_0/kernel"].shape[1]),
        "num_classes": int(weights["head/kernel"].shape[1]),
    }


def as_vit_variables(stored: LegacyFile, variables: dict[str, keras.Variable]) -> LegacyFile:
    """The file's attention weights reshaped to MultiHeadAttention's per-head layout."""
    weights = dict(stored.weights)
    for name, variable in variables.items():
        array = weights.get(name)
        if f"/{ATTENTION}/" in name and array is not None and array.size == math.prod(variable.shape):
            weights[name] = array.reshape(variable.shape)
    return LegacyFile(stored.path, stored.config, stored.layer_names, weights)
