"""The sweep's model and pair grammar: ``[label=]spec[@checkpoint]`` and ``control=harmonized``."""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attacks_torch.models import KERAS_SUFFIXES, model_kind, parse_published
from attacks_torch.sweep.errors import SweepError
from attacks_torch.sweep.store import RESERVED_NAMES


@dataclass(frozen=True)
class ModelSpec:
    """One model of a sweep: ``label`` names it in every table, ``spec`` says how to load it.

    Written ``[label=]spec[@checkpoint]``: spec is anything :func:`attacks_torch.models.load_model`
    takes (a timm name, ``efficientnet_lite0_imagenet``, a ``.keras``/``.h5`` path,
    ``published:NAME:PATH``, ``robustness:ARCH:PATH``, ``torchvision:ARCH:PATH``: the sources of
    :mod:`attacks_torch.models.sources`); ``@checkpoint`` gives a timm model local weights.
    """

    label: str
    spec: str
    checkpoint: str | None = None

    @property
    def slug(self) -> str:
        """The folder name of the model: the label with unsafe characters replaced."""
        return re.sub(r"[^A-Za-z0-9._-]+", "_", self.label).strip("._") or "model"

    def load_arguments(self, weights: str, num_classes: int | None, seed: int) -> dict[str, Any]:
        """Keyword arguments of ``load_model`` / ``model_identity`` for this model in a sweep with
        these settings: ``num_classes`` sizes timm heads only (Keras files and lite0 fix their own)."""
        return {
            "weights": weights,
            "checkpoint": self.checkpoint,
            "seed": seed,
            "num_classes": num_classes if model_kind(self.spec) == "timm" else None,
        }


def _default_label(spec: str) -> str:
    kind = model_kind(spec)
    if kind == "published":
        return Path(parse_published(spec)[1]).stem
    return Path(spec).stem if kind == "keras" else spec


def parse_model_spec(text: str) -> ModelSpec:
    """``[label=]spec[@checkpoint]`` -> ModelSpec (label defaults to the spec, a file's stem for paths)."""
    text = text.strip()
    label, sep, rest = text.partition("=")
    if not sep:
        label, rest = "", text
    spec, _, checkpoint = rest.partition("@")
    spec, label, checkpoint = spec.strip(), label.strip(), checkpoint.strip() or None
    if not spec:
        raise SweepError.about("models", f": {text!r} has an empty spec")
    try:
        kind = model_kind(spec)
        default = _default_label(spec)
    except ValueError as error:
        raise SweepError.about("models", f": {error}") from None
    if checkpoint and kind != "timm":
        raise SweepError.about("models", f": {text!r}: '@checkpoint' is for timm models only")
    return ModelSpec(label or default, spec, checkpoint)


def _items(argument: str, field: str) -> list[str]:
    """Lines of a UTF-8 text file, with or without a BOM (comments after '#' dropped), or the
    comma-separated items of a string; a file in another encoding is a SweepError naming it."""
    if os.path.isfile(argument):
        text = _items_text(argument, field)
        lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
        return [line for line in lines if line]
    return [item.strip() for item in argument.split(",") if item.strip()]


def _items_text(path: str, field: str) -> str:
    """The text of a UTF-8 file, with or without a BOM; a SweepError naming ``field`` and the
    file otherwise."""
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        problem = f"not UTF-8 text (byte {error.object[error.start]:#04x} at offset {error.start}); save it as UTF-8"
    except OSError as error:
        problem = f"cannot be read ({error.strerror})"
    raise SweepError.about(field, f" {path}: {problem}")


def parse_models(argument: str) -> list[ModelSpec]:
    """``models``: comma-separated specs, a text file with one spec per line, or one model file (a
    ``.keras`` / ``.h5`` path is a model, never a list). A label naming a file of the sweep folder
    (``summary.csv``, ...) is refused."""
    single = os.path.isfile(argument) and Path(argument).suffix in KERAS_SUFFIXES
    specs = [parse_model_spec(item) for item in ([argument] if single else _items(argument, "models"))]
    if not specs:
        raise SweepError.about("models", f" {argument!r}: no model given")
    seen: dict[str, str] = {}
    for spec in specs:
        if spec.slug.casefold() in RESERVED_NAMES:
            raise SweepError.about(
                "models",
                f": label {spec.label!r} is reserved (the sweep folder's {spec.slug} file); choose another label",
            )
        if spec.slug in seen:
            raise SweepError.about(
                "models", f": labels {seen[spec.slug]!r} and {spec.label!r} share the folder {spec.slug!r}"
            )
        seen[spec.slug] = spec.label
    return specs


def parse_pairs(argument: str) -> list[tuple[str, str]]:
    """``pairs``: ``control=harmonized`` items (comma-separated, or one per line of a text file,
    or a CSV file with columns ``control`` and ``harmonized``)."""
    if os.path.isfile(argument) and argument.endswith(".csv"):
        reader = csv.DictReader(_items_text(argument, "pairs").splitlines())
        if not {"control", "harmonized"} <= set(reader.fieldnames or ()):
            raise SweepError(f"{argument}: a pairs CSV needs the columns control, harmonized")
        return [((row["control"] or "").strip(), (row["harmonized"] or "").strip()) for row in reader]
    pairs = []
    for item in _items(argument, "pairs"):
        control, sep, harmonized = item.partition("=")
        if not sep or not control.strip() or not harmonized.strip():
            raise SweepError.about("pairs", f": {item!r} is not CONTROL=HARMONIZED")
        pairs.append((control.strip(), harmonized.strip()))
    return pairs
