"""Keras models as pixel models (RGB in [0, 255] -> logits): the training zoo and the published files.

- :mod:`.pixel`: the pixel-model layout (``preprocess`` + ``backbone``) and preprocessing layers;
- :mod:`.zoo`: ``build_model`` for every trainable architecture;
- :mod:`.timm_pixel`: a timm network as a pixel model (``build_model("timm:NAME", ...)``, torch backend);
- :mod:`.saved`: ``load_harmonized`` for files this project writes;
- :mod:`.published`: ``load_published`` for the reference's seven harmonized files.
"""

from harmonization.models.legacy_h5 import ModelFileError
from harmonization.models.pixel import (
    BACKBONE,
    CAFFE_MEAN_RGB,
    IMAGENET_MEAN,
    IMAGENET_STD,
    PREPROCESS,
    split_pixel_model,
)
from harmonization.models.published import PUBLISHED, PUBLISHED_NAMES, load_published, zoo_table
from harmonization.models.saved import load_harmonized
from harmonization.models.zoo import MODEL_NAMES, build_model

__all__ = [
    "BACKBONE",
    "CAFFE_MEAN_RGB",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MODEL_NAMES",
    "ModelFileError",
    "PREPROCESS",
    "PUBLISHED",
    "PUBLISHED_NAMES",
    "build_model",
    "load_harmonized",
    "load_published",
    "split_pixel_model",
    "zoo_table",
]
