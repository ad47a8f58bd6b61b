"""Import shim: vit-keras 0.1.2 imports tensorflow_addons; see tests/reference/shims/README.md."""

from tensorflow_addons import activations  # noqa: F401
