"""The table of model sources: each way of naming a model in a spec is one :class:`ModelSource`.

:func:`attacks_torch.models.load_model` and :func:`~attacks_torch.models.model_identity` ask
:func:`model_source` which source a spec belongs to and call that source's ``load`` or
``identity``; nothing else dispatches on the form of a spec. Sources are tried in the order they
were registered (the built-in ones: :mod:`attacks_torch.models.sources`); a spec no source claims
is a timm name (:data:`FALLBACK`), so a misspelt name is reported by timm with its closest names and
the forms every source takes. docs/data-contracts.md, "Model sources, and adding one", says how to add one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from attacks_torch.models.pixel import PixelModel


@dataclass(frozen=True)
class LoadOptions:
    """The keyword arguments of ``load_model`` / ``model_identity``, checked: ``weights`` is
    "pretrained" or "random"; ``checkpoint`` and ``num_classes`` are None unless the source takes
    them (:attr:`ModelSource.options`)."""

    weights: str = "pretrained"
    checkpoint: str | None = None
    num_classes: int | None = None
    seed: int = 0


def _well_formed(spec: str) -> None:
    """The default ``check``: a source whose ``matches`` accepts a spec takes it as it is."""


@dataclass(frozen=True)
class ModelSource:
    """One source of models.

    ``kind``: its name, what ``model_kind`` returns and the identity's "kind". ``form``: how its
    specs are written, for messages and docs. ``matches(spec)``: whether a spec is of this source
    (cheap: no file is read). ``check(spec)``: a one-line ValueError naming a malformed spec.
    ``load(spec, options)``: the :class:`PixelModel`. ``identity(spec, options)``: what ``load``
    builds, by content (a file by its sha256), as JSON data without "kind": equal identities,
    equal models. ``options``: whether the source takes ``checkpoint`` and ``num_classes`` (the
    others' weights fix their head).
    """

    kind: str
    form: str
    matches: Callable[[str], bool]
    load: Callable[[str, LoadOptions], PixelModel]
    identity: Callable[[str, LoadOptions], dict]
    check: Callable[[str], None] = _well_formed
    options: bool = False


SOURCES: list[ModelSource] = []
"""The registered sources, in the order they are tried."""
FALLBACK: list[ModelSource] = []
"""The source of a spec no registered source claims (timm names), set once by ``sources``."""


def register_source(source: ModelSource, *, fallback: bool = False) -> ModelSource:
    """Add ``source`` to the table (after those registered before it); returns it.

    ``fallback=True`` makes it the source of every spec no other source matches (one only). A
    second source of one ``kind`` is a ValueError.
    """
    if any(source.kind == known.kind for known in (*SOURCES, *FALLBACK)):
        raise ValueError(f"model source {source.kind!r} is already registered")
    if fallback:
        if FALLBACK:
            raise ValueError(f"model source {source.kind!r}: {FALLBACK[0].kind!r} is already the fallback")
        FALLBACK.append(source)
    else:
        SOURCES.append(source)
    return source


def known_sources() -> list[ModelSource]:
    """Every source, in the order :func:`model_source` tries them (the fallback last)."""
    return [*SOURCES, *FALLBACK]


def describe_sources() -> str:
    """The forms of every source, for a message: "published:NAME:PATH, ..., a timm name (...)"."""
    return ", ".join(source.form for source in known_sources())


def model_source(spec: str) -> ModelSource:
    """The source of ``spec``: the first registered one that matches, else the fallback."""
    for source in SOURCES:
        if source.matches(spec):
            return source
    if not FALLBACK:
        raise ValueError(f"model {spec!r}: no model source matches; known: {describe_sources()}")
    return FALLBACK[0]


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes (hex); a FileNotFoundError naming it when it does not exist."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"file {str(path)!r} does not exist")
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
