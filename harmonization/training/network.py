"""The network a ``Harmonizer`` trains, as a pixel model: its "preprocess" part maps [0, 255] RGB
pixels to the input of its "backbone" part, whose input the saliency is taken of."""

from __future__ import annotations

import keras

from harmonization.models import BACKBONE, PREPROCESS, split_pixel_model


def _bilinear_layers(model: keras.layers.Layer) -> list[str]:
    found = []
    for layer in getattr(model, "layers", []):
        if getattr(layer, "interpolation", None) == "bilinear":
            found.append(layer.name)
        found += _bilinear_layers(layer)
    return found


def _named(layer: keras.layers.Layer, name: str, input_shape: tuple) -> keras.Model:
    if layer.name == name:
        return layer
    inputs = keras.Input(input_shape)
    return keras.Model(inputs, layer(inputs), name=name)


def pixel_model_of(backbone: keras.Model, preprocess: keras.layers.Layer | None, harmonized: bool) -> keras.Model:
    """``backbone`` itself when ``preprocess`` is None (it must then be a pixel model with both
    parts), else ``preprocess`` and ``backbone`` joined into one, named as ``backbone``.

    ``harmonized`` (lambda > 0): a bilinear resize inside the backbone is refused, since it
    silently cuts the harmonization gradient on TensorFlow.
    """
    if preprocess is None:
        if split_pixel_model(backbone) is None:
            raise ValueError(
                f"model {backbone.name!r} has no '{PREPROCESS}' and '{BACKBONE}' parts: pass "
                "preprocess=<Keras layer mapping [0, 255] pixels to the network's input> "
                "(keras.layers.Identity() if the network takes raw pixels)"
            )
        pixel_model = backbone
    else:
        shape = tuple(backbone.input_shape[1:])
        pixels = keras.Input(shape, name="pixels")
        parts = _named(backbone, BACKBONE, shape)(_named(preprocess, PREPROCESS, shape)(pixels))
        pixel_model = keras.Model(pixels, parts, name=backbone.name)
    bilinear = _bilinear_layers(pixel_model.get_layer(BACKBONE))
    if bilinear and harmonized:
        raise ValueError(
            f"bilinear resizing inside the network ({', '.join(bilinear)}) silently cuts the "
            "harmonization gradient (TensorFlow's ResizeBilinearGrad has no gradient): resize "
            "in the data pipeline instead"
        )
    return pixel_model
