"""ClickMe data on the TensorFlow side: a ``tf.data`` reader of the published TFRecord layouts over
the TF-free format package :mod:`harmonization.clickme` (which also writes them), the human maps'
diffusion, image and map augmented together, mixing with ImageNet-style shards, and ClickMe-mini.

Importing this package imports TensorFlow.
"""
from harmonization.clickme import ClickMeDataError, encode_clickme, write_clickme, write_imagenet
from harmonization.data.diffusion import diffuse_heatmaps
from harmonization.data.mini import clickme_mini
from harmonization.data.pipeline import SkipCounter, describe_data_error, load_clickme

__all__ = [
    "ClickMeDataError",
    "SkipCounter",
    "clickme_mini",
    "describe_data_error",
    "diffuse_heatmaps",
    "encode_clickme",
    "load_clickme",
    "write_clickme",
    "write_imagenet",
]
