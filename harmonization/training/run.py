"""A whole training run as one call: ``run(TrainConfig(...)) -> TrainResult``.

Strategy, data, model, recipe, callbacks, fit, save, evaluation and summary, in a run folder
(``harmonization.training.resume``) that resumes a killed run where the uninterrupted run would
be, refuses to continue a run started with other settings or on other data
(``harmonization.training.fingerprint``), and does not retrain a finished one whose model file is
intact. ``harmonize train`` and the training notebook are thin front ends over it.
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import TYPE_CHECKING

from harmonization.console import keras_verbose
from harmonization.files import write_json
from harmonization.tensorflow_free import seed_keras
from harmonization.timm_models import timm_name
from harmonization.training.build import (
    build_harmonizer,
    check_model,
    datasets,
    save_and_evaluate,
    strategy_scope,
    training_stream,
)
from harmonization.training.config import TrainConfig, TrainResult, check_config
from harmonization.training.distribute import keras_distribution
from harmonization.training.errors import ConfigError, Namer, StaleRunError, TrainingCollapsed, field_name
from harmonization.training.fingerprint import DATA_FIELDS, data_changes, data_fingerprint, file_sha256
from harmonization.training.guards import data_classes
from harmonization.training.resume import MODEL, TIMM_MODEL, Backup, HistoryWriter, RunFolder, changed_settings

if TYPE_CHECKING:
    import tensorflow as tf

log = logging.getLogger(__name__)


def _resume_or_refuse(folder: RunFolder, config: TrainConfig, data: dict) -> dict | None:
    """The run record of ``folder`` if it holds this run (same settings, same ``data``
    fingerprint); refuses another run's folder, and a complete run whose model file is gone."""
    settings = config.settings()
    record = folder.read_record(settings)
    if record is None:
        return None
    changed = changed_settings(record["settings"], settings)
    if changed:

        def build(name):
            listed = ", ".join(f"{name(key)} {_shown(old)} (now {_shown(new)})" for key, (old, new) in changed.items())
            return f"{folder.out} holds a run started with other settings: {listed}; {name('fresh')} starts over"

        raise StaleRunError(build, changed)
    changes = data_changes(record["data"], data)
    if changes:
        raise ConfigError(
            lambda name: (
                f"{folder.out} holds a run trained on other data: "
                + "; ".join(f"{name(field)}: {what}" for field, what in changes)
                + f"; {name('fresh')} starts over"
            )
        )
    if record["status"] == "complete":
        folder.check_complete(record["model_sha256"])
    if record["status"] == "collapsed" and config.collapse_guard:
        raise TrainingCollapsed(
            lambda name: (
                f"{folder.out}: {record.get('message', 'the collapse guard stopped it')}; "
                f"{name('fresh')} starts over, "
                f"{name('collapse_guard')} continues it"
            )
        )
    return record


def _shown(value) -> str:
    if isinstance(value, list):
        return ",".join(f"{v:g}" for v in value) or "none"
    return "none" if value is None else str(value)


def _collapse_message(config: TrainConfig, folder: RunFolder, what: str):
    def build(name):
        hints = [f"a longer {name('warmup_epochs')}", f"a lower {name('lambda_harmonization')}"]
        hints.append(
            f"{name('lambda_schedule')} adaptive"
            if config.lambda_schedule != "adaptive"
            else f"a longer {name('lambda_ramp_epochs')}"
        )
        return (
            f"{folder.out}: {what}; try {', '.join(hints[:-1])} or {hints[-1]} "
            f"(history and backup kept; {name('collapse_guard')} continues the run)"
        )

    return build


def run(config: TrainConfig, strategy: tf.distribute.Strategy | None = None, name: Namer = field_name) -> TrainResult:
    """Train, save, evaluate and summarise one run in ``config.out``; see the module docstring.

    ``strategy``: the distribution strategy (default: ``harmonization.training.strategy()``,
    created here before any other TensorFlow operation; on the JAX and torch backends, which
    Keras distributes itself, none, and TensorFlow is not imported). ``name`` names a field in the lines
    logged (a front end passes its own names). Chance, for the adaptive gate, the collapse guard
    and the end-of-run check, is that of the classes present in the training labels
    (``data_classes``); a run still at chance at its end logs one line saying so, also recorded as
    ``chance`` in ``summary.json``. Raises ``ConfigError`` for settings
    that cannot run (``StaleRunError`` for a folder holding another run), ``TrainingCollapsed``
    when the collapse guard stopped the run, ``harmonization.files.OutputError`` for a file that
    cannot be written (what was written before is kept; the same call then resumes).
    """
    from harmonization.training.distribute import strategy as pick_strategy

    check_config(config)
    folder = RunFolder(config.out, MODEL if timm_name(config.model) is None else TIMM_MODEL)
    folder.prepare()
    if config.fresh:
        folder.clear()
    data = data_fingerprint({field: getattr(config, field) for field in DATA_FIELDS})
    record = _resume_or_refuse(folder, config, data)
    if record is not None and record["status"] == "complete":
        return TrainResult(
            "complete",
            folder.out,
            folder.model_path,
            folder.history_path,
            folder.summary_path,
            _read_summary(folder),
            folder.read_history(),
        )
    devices = None
    backend = config.settings()["backend"]
    if backend != "tensorflow":  # tf.distribute serves TensorFlow models only
        devices = keras_distribution(backend)
        if config.batch_size % devices:
            raise ConfigError(
                lambda name: (
                    f"{name('batch_size')} {config.batch_size} does not split over the {devices} {backend} devices"
                )
            )
    else:
        strategy = strategy or pick_strategy()  # first TensorFlow operation: collectives need that
        devices = strategy.num_replicas_in_sync
    check_model(config)
    classes = data_classes(config.train, config.num_classes, config.mix_with, name)

    from harmonization.evaluation import AlignmentCallback
    from harmonization.training.guards import CollapseGuard, never_left_chance

    seed_keras(config.seed)  # off TensorFlow: Keras's seeding and saving would import it
    whole_batches = _is_tpu(strategy) or (backend == "jax" and devices > 1)
    train, val, steps = datasets(config, whole_batches)
    harmonizer = build_harmonizer(config, steps, strategy, classes)
    backup = Backup(folder.backup_dir)
    with strategy_scope(strategy):
        done = backup.restore(harmonizer)
    train = training_stream(config, train, steps, done)
    history = HistoryWriter(folder.history_path, [r for r in folder.read_history() if r["epoch"] < done])
    callbacks = [AlignmentCallback(val, max_batches=config.alignment_batches), history, backup]
    guard = None
    if config.collapse_guard and config.lambda_harmonization > 0:
        start = math.ceil(max(config.warmup_epochs, config.lambda_ramp_epochs))
        guard = CollapseGuard(
            classes, start, config.collapse_patience, history.rows, gated=config.lambda_schedule == "adaptive"
        )
        callbacks.append(guard)
    settings = config.settings()
    folder.write_record(settings, "running", epochs_done=done, data=data)
    started = time.time()
    harmonizer.fit(
        train,
        validation_data=val,
        epochs=config.epochs,
        initial_epoch=done,
        steps_per_epoch=steps,
        callbacks=callbacks,
        verbose=keras_verbose(config.verbose),
        shuffle=False,
    )  # shuffled by the reader
    seconds = time.time() - started
    if guard is not None and guard.message is not None:
        folder.write_record(
            settings, "collapsed", message=guard.message, epochs_done=guard.stopped_epoch + 1, data=data
        )
        raise TrainingCollapsed(_collapse_message(config, folder, guard.message))
    stuck = never_left_chance(history.rows, classes)
    if stuck is not None:
        stuck = (
            f"{folder.out}: {stuck}; try another {name('lr')}, {name('min_crop_area')} 1 (whole "
            f"images) or more {name('epochs')}"
        )
        log.warning("%s", stuck)
    summary = {
        "settings": settings,
        "model_path": str(folder.model_path),
        "devices": devices,
        "train_seconds": seconds,
        "chance": {"data_classes": classes, "left_chance": stuck is None, "message": stuck},
        "resumed_epochs": done,
        "final_epoch": history.rows[-1] if history.rows else {},
        **save_and_evaluate(config, folder, harmonizer, None if whole_batches else val),
    }
    write_json(folder.summary_path, summary)
    folder.write_record(
        settings, "complete", epochs_done=config.epochs, data=data, model_sha256=file_sha256(folder.model_path)
    )
    backup.remove()
    return TrainResult(
        "trained", folder.out, folder.model_path, folder.history_path, folder.summary_path, summary, history.rows, done
    )


def _is_tpu(strategy) -> bool:
    if strategy is None:
        return False
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.TPUStrategy)


def _read_summary(folder: RunFolder) -> dict:
    try:
        return json.loads(folder.summary_path.read_text())
    except (OSError, ValueError) as error:
        kind = type(error).__name__  # bound now: the message is built after the except block ends
        raise ConfigError(
            lambda name: (
                f"{folder.summary_path}: the run is complete but its summary "
                f"is unreadable ({kind}); {name('fresh')} starts over"
            )
        ) from None
