"""Adversarial alignment with PyTorch: attack timm and harmonized Keras models in pixel space.

Never imports TensorFlow. ``harmonization`` is imported first, so triton is loaded before anything
can pull TensorFlow in lazily, or kept out when TensorFlow is already loaded (docs/traps.md, "Import order").
Importing it lets the process keep freed memory for reuse (`harmonization.memory`): attack steps
re-allocate the same large activations every pass.
"""

from harmonization.memory import retain_freed_memory  # noqa: I001  (harmonization first, as said above)

import torch  # noqa: F401,E402

retain_freed_memory()
