"""What fixes a model's rows: the model's content, the stimuli's content, the search, the attack's
resolved options and TF32. A folder resumes only under an equal fingerprint; otherwise the
difference is named."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from attacks_torch.models import model_identity
from attacks_torch.stimuli import Stimuli
from attacks_torch.sweep.config import SweepConfig
from attacks_torch.sweep.specs import ModelSpec

FORMAT = 2
"""Version of the fingerprint layout; a folder written under another one is not resumed."""


def stimuli_digest(stimuli: Stimuli) -> dict[str, Any]:
    """The count and a sha256 of the stimuli's images, maps, labels and ids (their content, not file names)."""
    digest = hashlib.sha256()
    for tensor in (stimuli.images, stimuli.heatmaps, stimuli.labels):
        array = np.ascontiguousarray(tensor.detach().cpu().numpy())
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.tobytes())
    digest.update("\n".join(stimuli.ids).encode())
    return {"n_images": len(stimuli), "sha256": digest.hexdigest()}


def fingerprint(spec: ModelSpec, config: SweepConfig, stimuli: dict[str, Any]) -> dict[str, Any]:
    """The fingerprint of ``spec``'s rows under ``config`` on stimuli of digest ``stimuli``, as JSON data.

    Raises what :func:`attacks_torch.models.model_identity` raises for a model file that is missing.
    """
    model = model_identity(spec.spec, **spec.load_arguments(config.weights, config.num_classes, config.seed))
    data = {
        "format": FORMAT,
        "model": model,
        "stimuli": stimuli,
        "attack": config.attack,
        "attack_options": config.resolved_attack_options(),
        "search": config.search_settings(),
        "batch_size": config.batch_size,
        "seed": config.seed,
        **({"tf32": True} if config.tf32 else {}),
    }  # absent when off: older folders resume
    return json.loads(json.dumps(data))  # tuples become lists: equal to what config.json reads back


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix: data}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _describe(key: str, before: Any, after: Any) -> str:
    section, _, name = key.partition(".")
    if key.endswith("sha256"):
        return {
            "model.sha256": "model file changed",
            "model.checkpoint_sha256": "model checkpoint changed",
            "stimuli.sha256": "stimuli changed",
        }.get(key, f"{key} changed")
    label = {"attack_options": "attack option", "search": "search setting", "model": "model"}.get(section)
    return f"{label} {name}: {before} -> {after}" if label else f"{key}: {before} -> {after}"


def differences(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What changed from fingerprint ``before`` to ``after``, one phrase each ("attack option steps: 3 -> 5")."""
    if before.get("format") != after.get("format"):
        return ["the folder was written by another version of the sweep"]
    old, new = _flatten(before), _flatten(after)
    missing = object()
    return [
        _describe(key, old.get(key, "unset"), new.get(key, "unset"))
        for key in sorted(set(old) | set(new))
        if old.get(key, missing) != new.get(key, missing)
    ]
