"""The parts of a training run built from its ``TrainConfig``: the data, the Harmonizer with its
recipe, and the saved and evaluated model (``run`` puts them together).

On the TensorFlow backend the data is the ``tf.data`` pipeline (``harmonization.data``); on JAX
and torch it is the framework-neutral reader (``harmonization.inputs``), and TensorFlow is never
imported: the batches then follow the reader's order, deterministic per seed but not the same
batches as a TensorFlow run's (docs/backends.md, "Input data, and TensorFlow in the process")."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from harmonization.files import output_errors
from harmonization.inputs.keras_data import evaluation_data, on_tensorflow
from harmonization.timm_models import timm_name
from harmonization.training.errors import ConfigError
from harmonization.training.resume import RunFolder, batch_stream

if TYPE_CHECKING:
    import tensorflow as tf

    from harmonization.training.config import TrainConfig


def batch_shape(config: TrainConfig) -> dict:
    """``load_clickme``'s batch size, image size and class count for this run."""
    return dict(batch_size=config.batch_size, image_size=config.image_size, num_classes=config.num_classes)


def datasets(config: TrainConfig, whole_batches: bool):
    """(train, val, steps per epoch). ``whole_batches``: validation drops its last, short batch too
    (a TPU, or JAX over several devices, needs every batch whole); ``save_and_evaluate`` then
    reads all of it for the end-of-run evaluation. Off TensorFlow ``train`` is the
    ``ClickMeInputs`` reader (``training_stream`` makes the batches of it)."""
    shape = batch_shape(config)
    if on_tensorflow():
        from harmonization.data import load_clickme

        train = load_clickme(
            config.train,
            "train",
            seed=config.seed,
            deterministic=config.deterministic_data,
            mix_with=config.mix_with,
            clickme_fraction=config.clickme_fraction,
            crop_area=(config.min_crop_area, 1.0),
            repeat=bool(config.steps_per_epoch),
            mixup=config.mixup or None,
            **shape,
        )
        steps = config.steps_per_epoch or int(train.cardinality())
    else:
        from harmonization.inputs import ClickMeInputs

        train = ClickMeInputs(
            config.train,
            "train",
            seed=config.seed,
            mix_with=config.mix_with,
            clickme_fraction=config.clickme_fraction,
            crop_area=(config.min_crop_area, 1.0),
            mixup=config.mixup or None,
            **shape,
        )
        # mixed data: an epoch's length varies with its draw, unknown as with tf.data
        steps = config.steps_per_epoch or (-1 if config.mix_with else train.num_batches(train.plan(0)))
    val = evaluation_data(config.val, config.val_split, drop_remainder=whole_batches, **shape)
    if steps < 0:
        raise ConfigError(
            lambda name: f"the number of training batches is unknown (mixed data): pass {name('steps_per_epoch')}"
        )
    if steps == 0:
        raise ConfigError(
            lambda name: (
                f"the training data {config.train} holds fewer examples than "
                f"one batch ({name('batch_size')} {config.batch_size})"
            )
        )
    return train, val, steps


def training_stream(config: TrainConfig, train, steps: int, done: int):
    """The training batches of a run resumed after ``done`` epochs of ``steps`` (``fit`` takes
    ``steps`` of them per epoch): TensorFlow, ``resume.batch_stream``; elsewhere the reader's
    global batches from ``done * steps`` on, reached without reading the ones before."""
    if on_tensorflow():
        return batch_stream(train, steps, done, repeated=bool(config.steps_per_epoch))
    from harmonization.inputs.keras_data import TrainingBatches

    return TrainingBatches(train, start=done * steps)


def strategy_scope(strategy):
    """``strategy.scope()``; no scope without a strategy (JAX and torch: Keras distributes)."""
    return contextlib.nullcontext() if strategy is None else strategy.scope()


def check_model(config: TrainConfig) -> None:
    from harmonization.models import MODEL_NAMES
    from harmonization.timm_models import check_name

    if timm_name(config.model) is not None:
        try:
            check_name(timm_name(config.model))
        except ValueError as error:
            detail = str(error)  # bound now: the message is built after the except block ends
            raise ConfigError(lambda name: f"{name('model')} {config.model}: {detail}") from None
    elif config.model not in MODEL_NAMES:
        raise ConfigError(
            lambda name: f"unknown {name('model')} {config.model!r}; known models: {', '.join(MODEL_NAMES)}"
        )


def build_harmonizer(
    config: TrainConfig, steps: int, strategy: tf.distribute.Strategy | None, chance_classes: int | None = None
):
    """The compiled Harmonizer of ``config``; ``chance_classes``: the classes of the training data
    (the adaptive gate's chance; default the head's width)."""
    from harmonization.models import build_model
    from harmonization.training.harmonizer import Harmonizer
    from harmonization.training.schedule import recipe, set_precision

    set_precision(config.bfloat16)
    with strategy_scope(strategy):
        model = build_model(config.model, config.num_classes, config.image_size, weights=config.weights)
        harmonizer = Harmonizer(
            model,
            lambda_harmonization=config.lambda_harmonization,
            lambda_weights=config.weight_decay,
            levels=config.levels,
            label_smoothing=config.label_smoothing,
            centered_logits=config.centered_logits,
            lambda_ramp_steps=round(config.lambda_ramp_epochs * steps),
            lambda_schedule=config.lambda_schedule,
            saliency=config.saliency,
            chance_classes=chance_classes,
        )
        harmonizer.compile(
            optimizer=recipe(
                config.lr, config.epochs, steps, config.warmup_epochs, config.decay_epochs, optimizer=config.optimizer
            ),
            steps_per_execution=config.steps_per_execution,
        )
        harmonizer.optimizer.build(harmonizer.trainable_variables)
    return harmonizer


def save_and_evaluate(config: TrainConfig, folder: RunFolder, harmonizer, val) -> dict:
    """Write ``model.keras`` (a timm model: ``model.safetensors``); {"validation": ...,
    "conflict": ...} evaluations of the trained model (``val`` None: read all of ``config.val``)."""
    from harmonization.evaluation import evaluate_clickme, public

    with output_errors(folder.model_path):
        if timm_name(config.model) is None:
            harmonizer.save_pixel_model(folder.model_path)
        else:
            from harmonization.models.timm_pixel import save_timm

            save_timm(harmonizer.pixel_model, folder.model_path)
    if val is None:
        val = evaluation_data(config.val, config.val_split, **batch_shape(config))
    results = {"validation": public(evaluate_clickme(harmonizer.pixel_model, val))}
    if config.conflict:
        conflict = evaluation_data(config.conflict, config.val_split, **batch_shape(config))
        results["conflict"] = public(evaluate_clickme(harmonizer.pixel_model, conflict))
    return results
