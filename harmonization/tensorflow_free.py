"""Keep TensorFlow out of a Keras process on the JAX or torch backend.

Keras imports TensorFlow (about 1 GB, when it is installed) in backend-neutral code to ask whether
it is available: when it seeds (``keras.utils.set_random_seed``) and when it serializes a model
(``model.save``), to handle TensorFlow objects. It asks once per process and keeps the answer.
``seed_keras`` seeds while ``import tensorflow`` fails (Python's documented ``sys.modules[name] =
None``), so that, off the TensorFlow backend in a process that has not loaded TensorFlow, Keras
takes it as absent from then on: it neither seeds nor saves through it, as none of its objects
exist in such a process. A process that has already loaded TensorFlow (a ``tf.data`` pipeline),
or runs on that backend, gets Keras's usual handling; one that loads it only after Keras asked
keeps the answer "absent" (Keras then seeds no TensorFlow generator and serializes no TensorFlow
shape). Only Python's and Keras's public API is used.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import keras

TENSORFLOW = "tensorflow"


@contextlib.contextmanager
def tensorflow_unimportable() -> Iterator[None]:
    """Within: ``import tensorflow`` raises ImportError, unless TensorFlow is Keras's backend or
    is already loaded (then nothing changes). What Keras asks within sees TensorFlow as absent."""
    if keras.backend.backend() == TENSORFLOW or TENSORFLOW in sys.modules:
        yield
        return
    sys.modules[TENSORFLOW] = None
    try:
        yield
    finally:
        if TENSORFLOW in sys.modules and sys.modules[TENSORFLOW] is None:
            del sys.modules[TENSORFLOW]


def seed_keras(seed: int) -> None:
    """``keras.utils.set_random_seed(seed)`` (Python, numpy, Keras, torch on that backend, and
    TensorFlow where it was loaded before Keras first asked), without importing TensorFlow for it
    (see the module docstring)."""
    with tensorflow_unimportable():
        keras.utils.set_random_seed(seed)
