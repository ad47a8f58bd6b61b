"""The one table of the kecam architectures re-implemented here (:mod:`.convnext`, :mod:`.levit`,
:mod:`.maxvit`): the published files hold kecam 1.3.10 weights, which kecam itself cannot load on
Keras 3 (docs/traps.md, "Published constructors").

Each entry names the module of this package and its builder (``builder(num_classes=...,
image_size=..., depths=...)`` -> a Keras network) and the pattern of a block's layer names, from
which :mod:`.published` reads a file's depth per stage.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Kecam:
    """One kecam architecture: where its re-implementation is and how its blocks are named."""

    module: str
    builder: str
    block: str  # regular expression: (stage, block) of a layer name, "/" read as "_"

    def build(self) -> Callable:
        """The builder function (its module is imported on first use)."""
        return getattr(importlib.import_module(f"harmonization.models.{self.module}"), self.builder)


KECAM = {
    "convnext_tiny": Kecam("convnext", "convnext_tiny", r"stack(\d+)_block(\d+)_"),
    "levit128": Kecam("levit", "levit128", r"stack(\d+)_block(\d+)_"),
    "maxvit_tiny": Kecam("maxvit", "maxvit_tiny", r"stack_(\d+)_block_(\d+)_"),
}
