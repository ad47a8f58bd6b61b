"""Keras models as pixel models (RGB in [0, 255] -> logits): the training zoo and the published files.

- :mod:`.pixel`: the pixel-model layout (``preprocess`` + ``backbone``) and preprocessing layers;
- :mod:`.zoo`: ``build_model`` for every trainable architecture;
- :mod:`.saved`: ``load_harmonized`` for files this project writes.
"""
from harmonization.models.pixel import (BACKBONE, CAFFE_MEAN_RGB, IMAGENET_MEAN, IMAGENET_STD,
                                        PREPROCESS, split_pixel_model)
from harmonization.models.saved import load_harmonized
from harmonization.models.zoo import MODEL_NAMES, build_model

__all__ = ["BACKBONE", "CAFFE_MEAN_RGB", "IMAGENET_MEAN", "IMAGENET_STD", "MODEL_NAMES", "PREPROCESS",
           "build_model", "load_harmonized", "split_pixel_model"]
