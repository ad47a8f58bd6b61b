"""Adversarial alignment with PyTorch: attack timm and harmonized Keras models in pixel space.

Never imports TensorFlow; torch (and triton) load before anything that might pull it in lazily.
Importing it lets the process keep freed memory for reuse (`harmonization.memory`): attack steps
re-allocate the same large activations every pass.
"""
import torch  # noqa: F401

from harmonization.memory import retain_freed_memory

retain_freed_memory()
