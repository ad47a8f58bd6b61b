"""`harmonize`: train a Keras model with the neural harmonizer, evaluate its human alignment,
or write ClickMe-mini. Bad arguments or inputs give one line on stderr and exit code 2.

    harmonize train --model small_cnn --train 'mini/train-*' --val 'mini/val-*' --epochs 8 --out run
    harmonize evaluate --weights run/model.keras --data 'mini/val-*' --conflict 'mini/conflict-*'
    harmonize mini --out mini --seed 0
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence

PROG = "harmonize"


class UsageError(Exception):
    """A bad argument or input, reported as one line with exit code 2."""


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr (exit code 2)."""

    def error(self, message: str):
        self.exit(2, f"{PROG}: error: {message} (see {self.prog} --help)\n")


def _number(kind: Callable[[str], float], low: float, inclusive: bool = True) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not math.isfinite(value) or value < low or (value == low and not inclusive):
            raise argparse.ArgumentTypeError(f"{text} must be {'>=' if inclusive else '>'} {low}")
        return value
    return parse


positive_int = _number(int, 1)
non_negative_int = _number(int, 0)
positive_float = _number(float, 0.0, inclusive=False)
non_negative_float = _number(float, 0.0)


def _fraction(text: str) -> float:
    value = positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"{text} must be in (0, 1]")
    return value


def _epochs_list(text: str) -> tuple[float, ...]:
    if text.strip().lower() in ("", "none"):
        return ()
    return tuple(positive_float(part) for part in text.split(","))


def _write_json(path: str, payload: dict) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    partial = f"{path}.partial-{os.getpid()}"
    try:
        with open(partial, "w") as handle:
            json.dump(payload, handle, indent=1, default=float)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def _public(result: dict) -> dict:
    """An evaluation result without its per-image arrays, for JSON."""
    return {key: value for key, value in result.items() if key != "per_image"}


def _print_evaluation(title: str, result: dict, conflict: dict | None = None) -> None:
    spearman, log_prob = result["spearman"], result["spearman_log_prob"]
    lines = [
        f"{title}: {result['count']} images, {result['mapped']} with a human map",
        f"  accuracy                  {result['accuracy']:.4f}",
        f"  alignment score (logit)   {result['alignment_score']:.4f}   "
        f"mean Spearman {spearman['mean']:.4f} +- {spearman['sem']:.4f} (s.e.)",
        f"  alignment score (log p)   {result['alignment_score_log_prob']:.4f}   "
        f"mean Spearman {log_prob['mean']:.4f} +- {log_prob['sem']:.4f} (s.e.)",
        f"  Dice {result['dice']:.4f}   IoU {result['iou']:.4f}",
        f"  gaming gap (logit - log p Spearman) {result['gaming_gap']:+.4f}: "
        + ("FLAGGED, logit alignment is not backed by the log-probability saliency"
           if result["gaming"] else f"ok (margin {result['gaming_margin']})"),
    ]
    if conflict is not None:
        lines.append(f"  conflict-split accuracy   {conflict['accuracy']:.4f} ({conflict['count']} images)")
    print("\n".join(lines), flush=True)


def _load_data(paths: str, split: str, args: argparse.Namespace, **options):
    from harmonization.data import load_clickme

    return load_clickme(paths, split=split, batch_size=args.batch_size, image_size=args.image_size,
                        num_classes=args.num_classes, **options)


def _steps_per_epoch(dataset, given: int | None) -> int:
    if given:
        return given
    count = int(dataset.cardinality())
    if count < 0:
        raise UsageError("the number of training batches is unknown (mixed data): pass --steps-per-epoch")
    if count == 0:
        raise UsageError("the training data holds fewer examples than one batch")
    return count


def train(args: argparse.Namespace) -> dict:
    """The ``train`` command: fit, save OUT/model.keras, OUT/history.csv, OUT/summary.json."""
    from harmonization.training import strategy as pick_strategy

    chosen = pick_strategy()  # first TensorFlow operation: multi-worker collectives need that
    import keras

    from harmonization.evaluation import AlignmentCallback, evaluate_clickme
    from harmonization.models import MODEL_NAMES, build_model
    from harmonization.training import Harmonizer, mixup, recipe, set_precision

    if args.model not in MODEL_NAMES:
        raise UsageError(f"unknown model {args.model!r}; known models: {', '.join(MODEL_NAMES)}")
    if args.weights and not os.path.isfile(args.weights):
        raise UsageError(f"weights file not found: {args.weights}")
    if args.warmup_epochs > args.epochs:
        raise UsageError(f"--warmup-epochs {args.warmup_epochs} exceeds --epochs {args.epochs}")
    os.makedirs(args.out, exist_ok=True)
    keras.utils.set_random_seed(args.seed)
    train_data = _load_data(args.train, "train", args, seed=args.seed, mix_with=args.mix_with,
                            clickme_fraction=args.clickme_fraction,
                            crop_area=(args.min_crop_area, 1.0), repeat=bool(args.steps_per_epoch))
    val_data = _load_data(args.val, args.val_split, args, deterministic=True)
    steps = _steps_per_epoch(train_data, args.steps_per_epoch)
    if args.mixup:
        train_data = mixup(train_data, args.num_classes, args.mixup, seed=args.seed)
    set_precision(args.bfloat16)
    with chosen.scope():
        model = build_model(args.model, args.num_classes, args.image_size, weights=args.weights)
        harmonizer = Harmonizer(
            model, lambda_harmonization=args.lam, lambda_weights=args.weight_decay,
            levels=args.levels, label_smoothing=args.label_smoothing,
            centered_logits=args.centered_logits,
            lambda_ramp_steps=round(args.lambda_ramp_epochs * steps))
        harmonizer.compile(optimizer=recipe(args.lr, args.epochs, steps, args.warmup_epochs,
                                            args.decay_epochs, optimizer=args.optimizer))
    callbacks = [
        AlignmentCallback(val_data, max_batches=args.alignment_batches),
        keras.callbacks.BackupAndRestore(os.path.join(args.out, "backup")),
        keras.callbacks.CSVLogger(os.path.join(args.out, "history.csv"), append=True),
    ]
    started = time.time()
    history = harmonizer.fit(train_data, validation_data=val_data, epochs=args.epochs,
                             steps_per_epoch=steps if args.steps_per_epoch else None,
                             callbacks=callbacks, verbose=args.verbose)
    seconds = time.time() - started
    model_path = harmonizer.save_pixel_model(os.path.join(args.out, "model.keras"))
    evaluation = evaluate_clickme(harmonizer.pixel_model, val_data)
    summary = {
        "args": {key: value for key, value in vars(args).items() if key != "run"},
        "model_path": model_path, "train_seconds": seconds,
        "final_epoch": {key: values[-1] for key, values in history.history.items() if values},
        "validation": _public(evaluation),
    }
    _write_json(os.path.join(args.out, "summary.json"), summary)
    _print_evaluation(f"{args.model} after {args.epochs} epochs ({seconds:.0f} s), validation",
                      evaluation)
    print(f"wrote {model_path}, {os.path.join(args.out, 'history.csv')}, "
          f"{os.path.join(args.out, 'summary.json')}")
    return summary


def evaluate(args: argparse.Namespace) -> dict:
    """The ``evaluate`` command: accuracy, alignment, gaming flag, conflict accuracy."""
    if not os.path.isfile(args.weights):
        raise UsageError(f"weights file not found: {args.weights}")
    from harmonization.evaluation import ClickMeEvaluator
    from harmonization.models import MODEL_NAMES, load_harmonized

    if args.weights.endswith(".weights.h5") and args.model not in MODEL_NAMES:
        raise UsageError(f"{args.weights} holds weights only: pass --model (one of "
                         f"{', '.join(MODEL_NAMES)}), --num-classes and --image-size")
    model = load_harmonized(args.weights, args.model, args.num_classes, args.image_size or 224)
    args.image_size = args.image_size or int(model.input_shape[1])
    args.num_classes = int(model.output_shape[-1])
    evaluator = ClickMeEvaluator(model)
    result = evaluator(_load_data(args.data, args.split, args, deterministic=True))
    conflict = None
    if args.conflict:
        conflict = evaluator(_load_data(args.conflict, args.split, args, deterministic=True))
    _print_evaluation(os.path.basename(args.weights), result, conflict)
    payload = {"weights": args.weights, "data": args.data, "evaluation": _public(result),
               "conflict": None if conflict is None else {"data": args.conflict,
                                                          "accuracy": conflict["accuracy"],
                                                          "count": conflict["count"]}}
    if args.out:
        _write_json(args.out, payload)
        print(f"wrote {args.out}")
    return payload


def mini(args: argparse.Namespace) -> dict:
    """The ``mini`` command: write ClickMe-mini and print its split globs as JSON."""
    from harmonization.data import clickme_mini

    splits = clickme_mini(args.out, seed=args.seed, image_size=args.image_size,
                          num_classes=args.num_classes, train_size=args.train_size,
                          val_size=args.val_size, conflict_size=args.conflict_size,
                          stimuli_per_class=args.stimuli_per_class, cue_agreement=args.cue_agreement)
    print(json.dumps(splits, indent=1))
    return splits


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog=PROG, description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    fit = commands.add_parser("train", help="train a zoo model with the neural harmonizer")
    fit.add_argument("--model", required=True, help="zoo model name (small_cnn, vgg16, resnet50v2, "
                     "efficientnetb0, convnext_tiny)")
    fit.add_argument("--train", required=True, help="ClickMe training shards (path, directory or glob)")
    fit.add_argument("--val", required=True, help="ClickMe validation shards")
    fit.add_argument("--val-split", choices=("val", "test"), default="val",
                     help="how validation images are read: 'val' takes the central 0.875 crop (ImageNet "
                          "style), 'test' only resizes (small images whose corners matter)")
    fit.add_argument("--epochs", type=positive_int, required=True)
    fit.add_argument("--out", required=True, help="output directory")
    fit.add_argument("--lambda", dest="lam", type=non_negative_float, default=1.0,
                     help="weight of the harmonization term (0: plain training, no saliency pass)")
    fit.add_argument("--batch-size", type=positive_int, default=64)
    fit.add_argument("--lr", type=positive_float, default=0.1, help="base learning rate")
    fit.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd",
                     help="sgd: Nesterov momentum 0.9 (the reference recipe); adam: for small "
                          "networks without batch norm (the demo)")
    fit.add_argument("--warmup-epochs", type=non_negative_float, default=1.0)
    fit.add_argument("--decay-epochs", type=_epochs_list, default=(),
                     help="comma-separated epochs of x0.1 decay, e.g. 30,60,80 (default: none)")
    fit.add_argument("--lambda-ramp-epochs", type=non_negative_float, default=1.0,
                     help="epochs over which lambda grows linearly from 0")
    fit.add_argument("--image-size", type=_number(int, 16), default=224)
    fit.add_argument("--num-classes", type=_number(int, 2), default=1000)
    fit.add_argument("--seed", type=non_negative_int, default=0)
    fit.add_argument("--centered-logits", action="store_true",
                     help="take the training saliency of logit_y - mean(logits)")
    fit.add_argument("--mix-with", help="ImageNet-style shards without maps, mixed in with token 0")
    fit.add_argument("--clickme-fraction", type=_fraction, default=0.2,
                     help="share of ClickMe examples when mixing")
    fit.add_argument("--steps-per-epoch", type=positive_int,
                     help="needed with --mix-with (the epoch length is then unknown)")
    fit.add_argument("--weights", help="initial weights: .weights.h5 of the model or a Keras notop .h5")
    fit.add_argument("--weight-decay", type=non_negative_float, default=1e-5)
    fit.add_argument("--label-smoothing", type=_number(float, 0.0), default=0.1)
    fit.add_argument("--levels", type=positive_int, default=5, help="pyramid levels")
    fit.add_argument("--min-crop-area", type=_fraction, default=0.08,
                     help="smallest area of the Inception random crop")
    fit.add_argument("--mixup", type=positive_float, help="mixup Beta(alpha, alpha) (default: off)")
    fit.add_argument("--bfloat16", action="store_true", help="mixed bfloat16 (TPU, recent GPUs)")
    fit.add_argument("--alignment-batches", type=positive_int,
                     help="validation batches for the per-epoch alignment (default: all)")
    fit.add_argument("--verbose", type=int, choices=(0, 1, 2), default=2,
                     help="Keras progress: 2 one line per epoch, 1 a bar, 0 silent")
    fit.set_defaults(run=train)

    check = commands.add_parser("evaluate", help="accuracy and human alignment of a saved model")
    check.add_argument("--weights", required=True, help=".keras, .h5, or .weights.h5 (with --model)")
    check.add_argument("--data", required=True, help="ClickMe shards")
    check.add_argument("--conflict", help="conflict-split shards: report accuracy on them too")
    check.add_argument("--split", choices=("val", "test"), default="val",
                       help="val: centre crop 0.875; test: resize only (stimulus sets)")
    check.add_argument("--image-size", type=_number(int, 16), help="default: the model's input size")
    check.add_argument("--num-classes", type=_number(int, 2), help="for .weights.h5 files")
    check.add_argument("--model", help="zoo model name, for .weights.h5 files")
    check.add_argument("--batch-size", type=positive_int, default=64)
    check.add_argument("--out", help="write the results as JSON here")
    check.set_defaults(run=evaluate)

    generate = commands.add_parser("mini", help="write ClickMe-mini, print the split globs")
    generate.add_argument("--out", required=True)
    generate.add_argument("--seed", type=non_negative_int, default=0)
    generate.add_argument("--image-size", type=_number(int, 16), default=32)
    generate.add_argument("--num-classes", type=_number(int, 2), default=4)
    generate.add_argument("--train-size", type=positive_int, default=2000)
    generate.add_argument("--val-size", type=positive_int, default=400)
    generate.add_argument("--conflict-size", type=positive_int, default=400)
    generate.add_argument("--stimuli-per-class", type=positive_int, default=25)
    generate.add_argument("--cue-agreement", type=_fraction, default=0.9,
                          help="share of train/val/stimuli images whose shortcut cue names the true class")
    generate.set_defaults(run=mini)
    return parser


def _input_error(error: BaseException) -> str | None:
    """The one-line message of an error caused by bad arguments or data, or None for a bug."""
    if isinstance(error, (UsageError, ValueError, FileNotFoundError, NotADirectoryError,
                          IsADirectoryError)):
        text = str(error).strip() or type(error).__name__
        return text.splitlines()[0]
    if "harmonization.data" in sys.modules:  # a bad record met while TensorFlow reads shards
        from harmonization.data import describe_data_error

        return describe_data_error(error)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``harmonize`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except Exception as error:
        message = _input_error(error)
        if message is None:
            raise
        parser.exit(2, f"{PROG}: error: {message}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
