"""ClickMe data on the TensorFlow side: read and write the published TFRecord layouts, diffuse the
human maps, augment image and map together, mix with ImageNet-style shards, and ClickMe-mini.

Importing this package imports TensorFlow.
"""
from harmonization.data.diffusion import diffuse_heatmaps
from harmonization.data.mini import clickme_mini
from harmonization.data.pipeline import SkipCounter, describe_data_error, load_clickme
from harmonization.data.shards import ClickMeDataError
from harmonization.data.writer import write_clickme, write_imagenet

__all__ = [
    "ClickMeDataError",
    "SkipCounter",
    "clickme_mini",
    "describe_data_error",
    "diffuse_heatmaps",
    "load_clickme",
    "write_clickme",
    "write_imagenet",
]
