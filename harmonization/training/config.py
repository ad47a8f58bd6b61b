"""The settings of a training run (``TrainConfig``), what the run returns (``TrainResult``) and the
checks of settings that cannot run, apart from the run itself (``harmonization.training.run``)
and the parts it builds (``harmonization.training.build``), which both read them."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import keras

from harmonization.saliency import TRAINING_SALIENCIES
from harmonization.timm_models import timm_name
from harmonization.training.distribute import worker_count
from harmonization.training.errors import ConfigError
from harmonization.training.schedule import LAMBDA_SCHEDULES


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The settings of one training run (``harmonize train`` has one flag per field).

    ``train``/``val``/``conflict``/``mix_with``: ClickMe shards (path, folder or glob); ``conflict``
    is only evaluated at the end. ``lambda_harmonization`` 0 trains plainly (no saliency pass);
    ``lambda_schedule`` and ``lambda_ramp_epochs`` set when it takes effect (``Harmonizer``).
    ``val_split`` "val" reads the central 0.875 crop, "test" only resizes. ``steps_per_epoch`` is
    needed with ``mix_with``. ``collapse_guard`` stops a harmonized run that stays at chance
    (``guards.CollapseGuard``); ``fresh`` discards what ``out`` holds of an earlier run.
    ``deterministic_data``: the training batches come in the same order with the same crops for the
    same ``seed``, so a rerun repeats the run (on one CPU process, exactly); False lets tf.data
    hand out whichever batch is ready first.
    ``backend``: the Keras backend it must run on (None: the one keras runs on); it is recorded.
    ``verbose``: Keras's progress (None: a bar on a terminal, one line per epoch otherwise).
    """

    model: str
    train: str
    val: str
    out: str
    epochs: int
    val_split: str = "val"
    lambda_harmonization: float = 1.0
    lambda_schedule: str = "adaptive"
    lambda_ramp_epochs: float = 1.0
    batch_size: int = 64
    lr: float = 0.1
    optimizer: str = "sgd"
    warmup_epochs: float = 1.0
    decay_epochs: tuple[float, ...] = ()
    image_size: int = 224
    num_classes: int = 1000
    seed: int = 0
    centered_logits: bool = False
    saliency: str = "signed"
    mix_with: str | None = None
    clickme_fraction: float = 0.2
    steps_per_epoch: int | None = None
    weights: str | None = None
    weight_decay: float = 1e-5
    label_smoothing: float = 0.1
    levels: int = 5
    min_crop_area: float = 0.08
    mixup: float | None = None
    bfloat16: bool = False
    conflict: str | None = None
    alignment_batches: int | None = None
    steps_per_execution: int = 1
    collapse_guard: bool = True
    deterministic_data: bool = True
    collapse_patience: int = 2
    fresh: bool = False
    verbose: int | None = None
    backend: str | None = None

    def settings(self) -> dict:
        """The fields that shape the trained model (recorded in ``run.json``, compared on resume)."""
        values = dataclasses.asdict(self)
        for name in RUN_OPTIONS:
            values.pop(name)
        values["decay_epochs"] = [float(e) for e in self.decay_epochs]
        values["backend"] = self.backend or keras.backend.backend()
        return values


RUN_OPTIONS = (
    "out",
    "conflict",
    "alignment_batches",
    "steps_per_execution",
    "collapse_guard",
    "collapse_patience",
    "deterministic_data",
    "fresh",
    "verbose",
)
"""Fields that change how a run is reported or guarded, not what it trains: a resumed run may differ."""


@dataclasses.dataclass
class TrainResult:
    """What ``run`` did. ``status``: "trained", or "complete" when ``out`` already held the
    finished run (nothing was trained). ``history``: one dict per epoch, as in ``history.csv``;
    ``validation``/``conflict``: ``evaluate_clickme`` results without per-image arrays;
    ``resumed_epochs``: epochs taken from the backup."""

    status: str
    out: Path
    model_path: Path
    history_path: Path
    summary_path: Path
    summary: dict
    history: list[dict]
    resumed_epochs: int = 0

    @property
    def validation(self) -> dict:
        return self.summary["validation"]

    @property
    def conflict(self) -> dict | None:
        return self.summary.get("conflict")


def check_config(config: TrainConfig) -> None:
    """Raise ``ConfigError`` for settings that cannot run, naming the fields (``name``)."""
    if config.lambda_schedule not in LAMBDA_SCHEDULES:
        raise ConfigError(
            lambda name: (
                f"{name('lambda_schedule')} must be one of "
                f"{', '.join(LAMBDA_SCHEDULES)}, got {config.lambda_schedule!r}"
            )
        )
    if config.saliency not in TRAINING_SALIENCIES:
        raise ConfigError(
            lambda name: f"{name('saliency')} must be one of {', '.join(TRAINING_SALIENCIES)}, got {config.saliency!r}"
        )
    if config.epochs < 1:
        raise ConfigError(lambda name: f"{name('epochs')} must be >= 1, got {config.epochs}")
    if config.warmup_epochs > config.epochs:
        raise ConfigError(
            lambda name: f"{name('warmup_epochs')} {config.warmup_epochs} exceeds {name('epochs')} {config.epochs}"
        )
    if config.backend and config.backend != keras.backend.backend():
        raise ConfigError(
            lambda name: (
                f"{name('backend')} {config.backend}: keras runs on "
                f"{keras.backend.backend()} in this process (KERAS_BACKEND)"
            )
        )
    if config.weights and not os.path.isfile(config.weights):
        raise ConfigError(lambda name: f"{name('weights')} file not found: {config.weights}")
    backend = config.backend or keras.backend.backend()
    if backend != "tensorflow" and worker_count() > 1:
        raise ConfigError(
            lambda name: (
                f"TF_CONFIG names {worker_count()} workers: multi-worker "
                f"training runs on {name('backend')} tensorflow only, not {backend}"
            )
        )
    if timm_name(config.model) is not None:
        if backend != "torch":
            raise ConfigError(
                lambda name: (
                    f"{name('model')} {config.model}: timm models train on "
                    f"{name('backend')} torch only, not on {backend}"
                )
            )
        if config.bfloat16:
            raise ConfigError(
                lambda name: f"{name('model')} {config.model}: timm models train in float32, without {name('bfloat16')}"
            )
