"""``harmonize train``: the flags of ``harmonization.training.TrainConfig``, and the run's display."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import sys

from harmonization.cli.common import (
    MAX_EPOCHS,
    epochs_float,
    fraction,
    image_size,
    non_negative_float,
    num_classes,
    positive_float,
    positive_int,
    print_evaluation,
    refuse_input_as_output,
    seed,
)
from harmonization.cli.toolkit import UsageError, flag_names, number
from harmonization.extras import install_hint

BACKENDS = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
"""Keras backend -> the package it needs."""
ZOO_NAMES = (
    "small_cnn",
    "small_cnn_plain",
    "vgg16",
    "resnet50v2",
    "efficientnetb0",
    "convnext_tiny",
    "vit_b16",
    "maxvit_tiny",
    "levit128",
)
"""``harmonization.models.MODEL_NAMES``, spelt out: the help is built before keras may be imported
(the backend is chosen first); tests/test_readme.py checks the two agree."""
RUN_BACKENDS = ("tensorflow", "jax", "torch")
"""The backends the whole run works on: the Harmonizer, its schedule and the alignment evaluation
run on each (docs/backends.md)."""


def _epochs_list(text: str) -> tuple[float, ...]:
    if text.strip().lower() in ("", "none"):
        return ()
    return tuple(_decay_epoch(part) for part in text.split(","))


_decay_epoch = number(float, 0.0, inclusive=False, high=MAX_EPOCHS)


def add_parser(commands) -> None:
    """Add the ``train`` subcommand; each destination is a ``TrainConfig`` field, and a flag left
    out keeps that field's default (the one home of the defaults)."""
    fit = commands.add_parser(
        "train",
        help="train a zoo model with the neural harmonizer",
        argument_default=argparse.SUPPRESS,
        description="A flag left out takes the default of its field of harmonization.training.TrainConfig.",
    )
    fit.add_argument(
        "--backend",
        choices=tuple(BACKENDS),
        help="Keras backend to train on (default: $KERAS_BACKEND, else tensorflow)",
    )
    fit.add_argument(
        "--model",
        required=True,
        help=f"zoo model name ({', '.join(ZOO_NAMES)}), or "
        "timm:NAME, a timm network (with --backend torch; saved as model.safetensors)",
    )
    fit.add_argument("--train", required=True, help="ClickMe training shards (path, directory or glob)")
    fit.add_argument("--val", required=True, help="ClickMe validation shards")
    fit.add_argument(
        "--val-split",
        choices=("val", "test"),
        help="how validation images are read: 'val' takes the central 0.875 crop (ImageNet "
        "style), 'test' only resizes (small images whose corners matter)",
    )
    fit.add_argument("--conflict", help="conflict-split shards: evaluate the trained model on them too")
    fit.add_argument("--epochs", type=number(int, 1, high=MAX_EPOCHS), required=True)
    fit.add_argument("--out", required=True, help="run folder (a rerun with the same flags resumes it)")
    fit.add_argument("--fresh", action="store_true", help="discard what --out holds of an earlier run")
    fit.add_argument(
        "--lambda",
        dest="lambda_harmonization",
        type=non_negative_float,
        help="weight of the harmonization term (0: plain training, no saliency pass)",
    )
    fit.add_argument(
        "--lambda-schedule",
        help="adaptive (default): lambda takes effect once the training accuracy is "
        "clearly above chance; linear: the published recipe, a ramp from the start",
    )
    fit.add_argument(
        "--lambda-ramp-epochs", type=epochs_float, help="epochs over which lambda grows linearly from 0 (0: at once)"
    )
    fit.add_argument("--batch-size", type=number(int, 1, high=65536))
    fit.add_argument("--lr", type=positive_float, help="base learning rate")
    fit.add_argument(
        "--optimizer",
        choices=("sgd", "adam"),
        help="sgd: Nesterov momentum 0.9 (the reference recipe); adam: for small "
        "networks without batch norm (the demo)",
    )
    fit.add_argument("--warmup-epochs", type=epochs_float)
    fit.add_argument(
        "--decay-epochs", type=_epochs_list, help="comma-separated epochs of x0.1 decay, e.g. 30,60,80 (default: none)"
    )
    fit.add_argument("--image-size", type=image_size)
    fit.add_argument("--num-classes", type=num_classes)
    fit.add_argument("--seed", type=seed)
    fit.add_argument(
        "--centered-logits", action="store_true", help="take the training saliency of logit_y - mean(logits)"
    )
    fit.add_argument(
        "--saliency",
        help="the training saliency's channel reduction: signed (the published mean) "
        "or absolute (|gradient| max over channels, what human alignment ranks)",
    )
    fit.add_argument("--mix-with", help="ImageNet-style shards without maps, mixed in with token 0")
    fit.add_argument("--clickme-fraction", type=fraction, help="share of ClickMe examples when mixing")
    fit.add_argument(
        "--steps-per-epoch", type=positive_int, help="needed with --mix-with (the epoch length is then unknown)"
    )
    fit.add_argument(
        "--weights",
        help="initial weights: .weights.h5 of the model or a Keras notop .h5; "
        "for timm:NAME a local timm checkpoint (.safetensors or a torch weights file)",
    )
    fit.add_argument("--weight-decay", type=non_negative_float)
    fit.add_argument("--label-smoothing", type=number(float, 0.0, high=0.99))
    fit.add_argument("--levels", type=number(int, 1, high=16), help="pyramid levels")
    fit.add_argument("--min-crop-area", type=fraction, help="smallest area of the Inception random crop")
    fit.add_argument("--mixup", type=positive_float, help="mixup Beta(alpha, alpha) (default: off)")
    fit.add_argument("--bfloat16", action="store_true", help="mixed bfloat16 (TPU, recent GPUs)")
    fit.add_argument(
        "--steps-per-execution",
        type=number(int, 1, high=10**5),
        help="training steps per compiled call (TPUs: e.g. 32)",
    )
    fit.add_argument(
        "--alignment-batches", type=positive_int, help="validation batches for the per-epoch alignment (default: all)"
    )
    fit.add_argument(
        "--no-collapse-guard",
        dest="collapse_guard",
        action="store_false",
        help="do not stop a harmonized run that is at chance with the harmonization "
        "term on (a stopped run exits with code 3)",
    )
    fit.add_argument(
        "--no-deterministic-data",
        dest="deterministic_data",
        action="store_false",
        help="let tf.data hand out training batches as they are ready (faster input; a "
        "rerun with the same --seed no longer repeats the run); --backend tensorflow "
        "only: the JAX and torch reader is always deterministic",
    )
    fit.add_argument(
        "--collapse-patience",
        type=number(int, 1, high=MAX_EPOCHS),
        help="epochs at chance with the harmonization term on, after the warm-up and "
        "the lambda ramp, before the guard stops",
    )
    fit.add_argument(
        "--verbose",
        type=int,
        choices=(0, 1, 2),
        help="Keras progress: 2 one line per epoch, 1 a bar, 0 silent (default: a bar "
        "on a terminal, one line per epoch otherwise)",
    )
    fit.set_defaults(run=train, flags=flag_names(fit))


def select_backend(backend: str) -> None:
    """Make ``backend`` the Keras backend of this process, before keras is imported.

    Raises ``UsageError`` (exit code 2) when its package is not installed, when the run does not
    work on it (``RUN_BACKENDS``), or when keras is already loaded with another backend (the backend is fixed
    per process).
    """
    if importlib.util.find_spec(BACKENDS[backend]) is None:
        raise UsageError(f"--backend {backend}: {install_hint(BACKENDS[backend])}")
    if backend not in RUN_BACKENDS:
        raise UsageError(
            f"--backend {backend}: the training run works on {', '.join(RUN_BACKENDS)} only (docs/backends.md)"
        )
    if "keras" in sys.modules:
        active = sys.modules["keras"].backend.backend()
        if active != backend:
            raise UsageError(
                f"--backend {backend}: keras is already loaded with the {active} "
                "backend in this process; run harmonize in a new process"
            )
        return
    os.environ["KERAS_BACKEND"] = backend


def train(args: argparse.Namespace):
    """Run ``harmonization.training.run`` with the flags; print the validation summary."""
    if getattr(args, "backend", None):
        select_backend(args.backend)
    from harmonization.training import TrainConfig, run
    from harmonization.training.resume import RUN_FILES

    refuse_input_as_output(
        "--out",
        [args.out, *(os.path.join(args.out, name) for name in RUN_FILES)],
        [getattr(args, name, None) for name in ("train", "val", "conflict", "mix_with", "weights")],
    )

    config = TrainConfig(
        **{
            field.name: getattr(args, field.name)
            for field in dataclasses.fields(TrainConfig)
            if hasattr(args, field.name)
        }
    )
    result = run(config, name=lambda field: args.flags.get(field, field))
    if result.status == "complete":
        print(
            f"{result.out}: the run is already complete ({config.epochs} epochs; "
            f"{result.model_path}); --fresh starts over",
            flush=True,
        )
        return result
    resumed = f", resumed after epoch {result.resumed_epochs}" if result.resumed_epochs else ""
    title = (
        f"{config.model} after {config.epochs} epochs ({result.summary['train_seconds']:.0f} s{resumed}), validation"
    )
    print_evaluation(title, result.validation, result.conflict)
    print(f"wrote {result.model_path}, {result.history_path}, {result.summary_path}")
    return result
