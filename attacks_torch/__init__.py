"""Adversarial alignment with PyTorch: attack timm and harmonized Keras models in pixel space.

Never imports TensorFlow; torch (and triton) load before anything that might pull it in lazily.
"""
import torch  # noqa: F401
