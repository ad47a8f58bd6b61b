"""A ``Harmonizer``'s settings: the checks its constructor runs on them, the config that
``get_config`` writes (with its format number, ``HARMONIZER_FORMAT``) and the constructor arguments
that ``from_config`` reads back from one."""

from __future__ import annotations

import inspect

import keras

from harmonization.saliency import TRAINING_SALIENCIES
from harmonization.training.formats import HARMONIZER_FORMAT, format_problem
from harmonization.training.schedule import LAMBDA_SCHEDULES


def check_settings(
    lambda_harmonization: float,
    lambda_weights: float,
    label_smoothing: float,
    lambda_ramp_steps: int,
    lambda_schedule: str,
    saliency: str,
) -> None:
    """Raise ValueError, naming the setting, for a value the Harmonizer cannot train with."""
    if saliency not in TRAINING_SALIENCIES:
        raise ValueError(f"saliency must be one of {', '.join(TRAINING_SALIENCIES)}, got {saliency!r}")
    if lambda_schedule not in LAMBDA_SCHEDULES:
        raise ValueError(f"lambda_schedule must be one of {', '.join(LAMBDA_SCHEDULES)}, got {lambda_schedule!r}")
    if lambda_harmonization < 0 or lambda_weights < 0 or lambda_ramp_steps < 0:
        raise ValueError(
            "lambda_harmonization, lambda_weights and lambda_ramp_steps must be "
            f">= 0, got {lambda_harmonization}, {lambda_weights}, {lambda_ramp_steps}"
        )
    if not 0 <= label_smoothing < 1:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")


def harmonizer_config(harmonizer: keras.Model) -> dict:
    """The Harmonizer's config: its format number, its pixel model (serialized) and its settings."""
    return {
        "format": HARMONIZER_FORMAT,
        "backbone": keras.saving.serialize_keras_object(harmonizer.pixel_model),
        "lambda_harmonization": harmonizer.lambda_harmonization,
        "lambda_weights": harmonizer.lambda_weights,
        "levels": harmonizer.levels,
        "label_smoothing": harmonizer.label_smoothing,
        "centered_logits": harmonizer.centered_logits,
        "lambda_ramp_steps": harmonizer.lambda_ramp_steps,
        "lambda_schedule": harmonizer.lambda_schedule,
        "saliency": harmonizer.saliency,
        "chance_classes": harmonizer.chance_classes,
        "name": harmonizer.name,
    }


def harmonizer_arguments(cls: type, config: dict) -> dict:
    """The constructor arguments of ``cls`` (the Harmonizer class) for a saved ``config``; a config
    of another format, or one that lacks a setting, raises ValueError in one line."""
    config = dict(config)
    written = config.pop("format", None)
    arguments = set(inspect.signature(cls).parameters) - {"preprocess", "kwargs"}
    problem = format_problem(written, HARMONIZER_FORMAT, arguments - set(config))
    if problem is not None:
        raise ValueError(f"a saved Harmonizer: {problem}; open it with the version of harmonization that saved it")
    config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
    return config
