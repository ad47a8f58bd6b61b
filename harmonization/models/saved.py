"""Loading pixel models saved by this project (``.keras``, legacy full-model ``.h5``, ``.weights.h5``)."""
from __future__ import annotations

import os

import keras

from harmonization.models.zoo import MODEL_NAMES, build_model


def load_harmonized(path: str, name: str | None = None, num_classes: int | None = None,
                    image_size: int = 224) -> keras.Model:
    """Load a pixel model from ``.keras``, legacy full-model ``.h5``, or ``.weights.h5``.

    A ``.weights.h5`` file holds no architecture: pass the zoo ``name``, ``num_classes`` and
    ``image_size`` it was built with.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file not found: {path}")
    if path.endswith(".weights.h5"):
        if name is None or num_classes is None:
            raise ValueError(f"{path}: a .weights.h5 file needs name= and num_classes= "
                             f"(known models: {', '.join(MODEL_NAMES)})")
        return build_model(name, num_classes, image_size, weights=path)
    if path.endswith((".keras", ".h5", ".hdf5")):
        return keras.saving.load_model(path, compile=False)
    raise ValueError(f"{path}: expected a .keras, .h5 or .weights.h5 file")
