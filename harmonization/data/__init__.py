"""ClickMe data on the TensorFlow side: a ``tf.data`` reader of the published TFRecord layouts over
the TF-free format package :mod:`harmonization.clickme` (which also writes them), the human maps'
diffusion, image and map augmented together, mixing with ImageNet-style shards, and ClickMe-mini.

The names load on first use: ``load_clickme``, ``SkipCounter``, ``describe_data_error`` and
``diffuse_heatmaps`` import TensorFlow; ClickMe-mini and the test beds (``clickme_mini``,
``harmonization.data.mini``, ``harmonization.data.testbeds``) and the writers do not.
"""

from __future__ import annotations

import importlib

from harmonization.clickme import ClickMeDataError, encode_clickme, write_clickme, write_imagenet

_LAZY = {
    "clickme_mini": "harmonization.data.mini",
    "diffuse_heatmaps": "harmonization.data.diffusion",
    "SkipCounter": "harmonization.data.reading",
    "describe_data_error": "harmonization.data.reading",
    "load_clickme": "harmonization.data.pipeline",
}

__all__ = ["ClickMeDataError", "encode_clickme", "write_clickme", "write_imagenet", *_LAZY]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value
