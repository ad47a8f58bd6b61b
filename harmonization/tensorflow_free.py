"""Keep TensorFlow out of a Keras process on the JAX or torch backend.

Keras asks whether TensorFlow is available (and so imports it, about 1 GB, when it is installed)
in backend-neutral code: when it seeds (``keras.utils.set_random_seed``) and when it serializes a
model (``model.save``), to handle TensorFlow objects. Off the TensorFlow backend no such object
exists until something loads TensorFlow, so ``keep_tensorflow_out`` makes Keras's answer "only
once it is loaded": a process that never imports TensorFlow itself never loads it, and one that
does (a ``tf.data`` pipeline) gets Keras's usual handling from then on.
"""
from __future__ import annotations

import sys

import keras
from keras.src.utils.module_utils import LazyModule


class _OnceLoaded(LazyModule):
    """Keras's lazy TensorFlow handle, available only once TensorFlow is in ``sys.modules``."""

    @property
    def available(self) -> bool:
        return "tensorflow" in sys.modules and super().available


def keep_tensorflow_out() -> None:
    """On a backend other than TensorFlow, stop Keras from importing TensorFlow on its own
    (see the module docstring); nothing on the TensorFlow backend."""
    from keras.src.utils import module_utils

    handle = module_utils.tensorflow
    if keras.backend.backend() != "tensorflow" and type(handle) is LazyModule:
        handle.__class__ = _OnceLoaded
