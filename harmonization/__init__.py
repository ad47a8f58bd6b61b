"""Neural harmonizer: train Keras models toward human feature importance, measure alignment.

This file stays light: submodules import TensorFlow only when they need it.

Import order (docs/traps.md, "Import order"): loading triton (pulled in by timm, torchvision or the first
``torch.optim`` optimizer) after TensorFlow kills the process (tensorflow#124205). So, once per
process: if TensorFlow is not loaded yet, triton is loaded now, before it can be; if TensorFlow is
already loaded (a notebook that starts with ``import tensorflow``), triton is marked unavailable
instead, so torch runs without it (torch needs triton only to compile GPU kernels) rather than crash.

TensorFlow, when this process imports it later, writes its start-up lines once
(``harmonization.console.quiet_tensorflow``; it imports nothing now).
"""

import sys as _sys


def _settle_triton() -> None:
    if "triton" in _sys.modules:
        return
    if "tensorflow" in _sys.modules:
        _sys.modules["triton"] = None  # `import triton` now raises ImportError; find_spec says absent
        return
    try:
        import triton  # noqa: F401
    except ImportError:  # pragma: no cover - torch (and triton) are optional for the training side
        pass


_settle_triton()


def _quiet_tensorflow() -> None:
    from harmonization.console import quiet_tensorflow

    quiet_tensorflow()


_quiet_tensorflow()
