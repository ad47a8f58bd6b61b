"""Full-model tf.keras 2 files (``model.save("x.h5")``) rebuilt from their own config in Keras 3.

The architecture is read from the file's ``model_config`` (the published "ResNet50V2" file's name
does not say which ResNet it holds), translated to core Keras 3 layers and then filled with the
file's weights by name (:func:`harmonization.models.legacy_h5.assign_by_name`). The translation
accepts only a fixed list of core layer classes, so a file can never make this loader run code
(a ``Lambda`` layer is refused). It also:

- maps the ``efficientnet`` package's custom objects onto core Keras: its ``swish`` function is
  ``silu``, and its ``FixedDropout`` is a ``Dropout`` whose noise shape may hold ``None``, which
  Keras 3's own ``Dropout`` accepts (dropout is inactive at inference either way);
- drops ``groups`` from ``DepthwiseConv2D`` configs (tf.keras 2 wrote it, Keras 3 refuses it);
- replaces a final softmax by a linear activation, so the model returns logits;
- reads a single input or output written as a flat ``[name, 0, 0]`` (Keras 3's ``model.save("x.h5")``)
  as the list of one that tf.keras 2 wrote.
"""

from __future__ import annotations

import copy

import keras

from harmonization.models.legacy_h5 import LegacyFile, ModelFileError, assign_by_name, layer_variables

CORE_LAYERS = frozenset(
    {
        "InputLayer",
        "Conv2D",
        "DepthwiseConv2D",
        "Dense",
        "BatchNormalization",
        "Activation",
        "ReLU",
        "Add",
        "Multiply",
        "MaxPooling2D",
        "AveragePooling2D",
        "GlobalAveragePooling2D",
        "ZeroPadding2D",
        "Flatten",
        "Reshape",
        "Dropout",
        "Rescaling",
        "Normalization",
    }
)
RENAMED_CLASSES = {"FixedDropout": "Dropout"}
RENAMED_ACTIVATIONS = {"swish": "silu"}
DROPPED_KEYS = {"DepthwiseConv2D": ("groups",)}


def _flat_endpoint(endpoints) -> bool:
    """True for one ``[layer name, node index, tensor index]`` not wrapped in a list."""
    return (
        isinstance(endpoints, list)
        and len(endpoints) == 3
        and isinstance(endpoints[0], str)
        and all(isinstance(index, int) for index in endpoints[1:])
    )


def translate_config(stored: LegacyFile) -> dict:
    """The Keras 3 config of the file's model, with a linear head."""
    config = stored.config
    if config is None:
        raise ModelFileError(
            f"model file {stored.path}: holds weights only, no model_config (a full-model file was expected)"
        )
    if config.get("class_name") not in ("Functional", "Model"):
        raise ModelFileError(
            f"model file {stored.path}: a {config.get('class_name')!r} model, expected a functional one"
        )
    config = copy.deepcopy(config["config"])
    for layer in config["layers"]:
        layer["class_name"] = RENAMED_CLASSES.get(layer["class_name"], layer["class_name"])
        if layer["class_name"] not in CORE_LAYERS:
            raise ModelFileError(
                f"model file {stored.path}: layer {layer.get('name')!r} is a "
                f"{layer['class_name']!r}, not one of the core layers this loader rebuilds"
            )
        for key in DROPPED_KEYS.get(layer["class_name"], ()):
            layer["config"].pop(key, None)
        activation = layer["config"].get("activation")
        if isinstance(activation, str):
            layer["config"]["activation"] = RENAMED_ACTIVATIONS.get(activation, activation)
    for key in ("input_layers", "output_layers"):  # Keras 3 writes one endpoint as a flat [name, 0, 0]
        if _flat_endpoint(config.get(key)):
            config[key] = [config[key]]
    if len(config["output_layers"]) != 1:
        raise ModelFileError(
            f"model file {stored.path}: {len(config['output_layers'])} outputs, expected one classifier"
        )
    head_name = config["output_layers"][0][0]
    head = next(layer for layer in config["layers"] if layer["config"].get("name") == head_name)
    if head["class_name"] != "Dense":
        raise ModelFileError(
            f"model file {stored.path}: its output layer {head_name!r} is a "
            f"{head['class_name']!r}, expected the Dense classifier"
        )
    head_activation = head["config"].get("activation", "linear")
    if head_activation not in ("linear", "softmax"):
        raise ModelFileError(
            f"model file {stored.path}: classifier activation {head_activation!r}, expected linear or softmax"
        )
    head["config"]["activation"] = "linear"
    return config


def load_full_model(stored: LegacyFile) -> keras.Model:
    """The file's network in Keras 3 (logits out, the file's weights in)."""
    config = translate_config(stored)
    try:
        model = keras.Model.from_config(config)
    except (TypeError, ValueError, KeyError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ModelFileError(
            f"model file {stored.path}: its model_config cannot be rebuilt ({message[:200]})"
        ) from None
    assign_by_name(layer_variables(model), stored)
    return model


def layer_names_of(stored: LegacyFile) -> set[str]:
    """Names of the layers in the file's config (or of its weight groups, for weights only)."""
    if stored.config is None:
        return set(stored.layer_names)
    return {layer["config"].get("name", layer.get("name")) for layer in stored.config["config"]["layers"]}
