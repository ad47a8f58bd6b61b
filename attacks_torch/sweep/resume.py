"""What a sweep checks before it resumes a model: each model's fingerprint (``fingerprint.py``),
whether its folder must start over or be refused, and that the model loaded is the one hashed."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from attacks_torch.models import PixelModel, load_model, model_identity
from attacks_torch.sweep.config import SweepConfig
from attacks_torch.sweep.errors import SweepError
from attacks_torch.sweep.fingerprint import differences, fingerprint
from attacks_torch.sweep.specs import ModelSpec
from attacks_torch.sweep.store import ModelFolder
from harmonization.errors import Namer


def must_start_over(folder: ModelFolder, current: dict[str, Any], fresh: bool) -> bool:
    """Whether ``folder`` must be emptied before the run (``fresh`` and other settings); refuses
    with a SweepError naming what changed when not ``fresh``."""

    def how(name: Namer) -> str:
        return f"start that model over with {name('fresh')}, or use another {name('out_dir')}"

    try:
        previous = folder.read_config()
    except SweepError as error:
        if fresh:
            return True
        build = error.build
        raise SweepError(lambda name: f"{build(name)}; {how(name)}") from None
    if previous is None:
        if fresh or not folder.has_results():
            return fresh and folder.has_results()
        raise SweepError(lambda name: f"{folder.path}: holds results but no config.json; {how(name)}")
    changes = differences(previous, current)
    if changes and not fresh:
        raise SweepError(lambda name: f"{folder.path}: cannot resume, {'; '.join(changes)}; {how(name)}")
    return bool(changes)


def fingerprints(
    models: Sequence[ModelSpec],
    config: SweepConfig,
    digest: dict[str, Any],
) -> dict[str, dict[str, Any] | Exception]:
    """Each model's fingerprint by slug, or the error that kept it from being hashed."""
    prints: dict[str, dict[str, Any] | Exception] = {}
    for spec in models:
        try:
            prints[spec.slug] = fingerprint(spec, config, digest)
        except (OSError, ValueError) as error:  # a missing or unreadable model file: that model fails
            prints[spec.slug] = error
    return prints


def load_checked(spec: ModelSpec, config: SweepConfig, fp: dict[str, Any]) -> PixelModel:
    """The model of ``spec``, refused when what was loaded is not what the fingerprint hashed at the
    start (a model file replaced in between would file its rows under the old file's hash)."""
    arguments = spec.load_arguments(config.weights, config.num_classes, config.seed)
    model = load_model(spec.spec, **arguments)
    if json.loads(json.dumps(model_identity(spec.spec, **arguments))) != fp["model"]:
        raise ValueError(
            f"model {spec.label!r}: its file changed between the start of the sweep and its loading; "
            "run the sweep again, starting that model over"
        )
    return model
