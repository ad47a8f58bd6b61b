"""Neural harmonizer: train Keras models toward human feature importance, measure alignment.

This file stays light: submodules import TensorFlow only when they need it.
"""
try:  # Loading triton after TensorFlow segfaults the process (tensorflow#124205): load it first.
    import triton  # noqa: F401
except ImportError:  # pragma: no cover - torch (and triton) are optional for the training side
    pass
