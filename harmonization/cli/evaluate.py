"""``harmonize evaluate``: accuracy, human alignment, gaming and near-chance flags of a saved model."""

from __future__ import annotations

import argparse
import os

from harmonization.cli.common import (
    conflict_line,
    image_size,
    num_classes,
    print_evaluation,
    refuse_input_as_output,
)
from harmonization.cli.toolkit import UsageError, flag_names, number


def add_parser(commands) -> None:
    """Add the ``evaluate`` subcommand."""
    check = commands.add_parser("evaluate", help="accuracy and human alignment of a saved model")
    check.add_argument(
        "--weights",
        required=True,
        help=".keras, .h5, .weights.h5 (with --model), a timm model's .safetensors "
        "(torch backend), or the folder of a `harmonize train` run",
    )
    check.add_argument("--data", required=True, help="ClickMe shards")
    check.add_argument("--conflict", help="conflict-split shards: report accuracy on them too")
    check.add_argument(
        "--split",
        choices=("val", "test"),
        default="val",
        help="val: centre crop 0.875; test: resize only (stimulus sets)",
    )
    check.add_argument("--image-size", type=image_size, help="default: the model's input size")
    check.add_argument("--num-classes", type=num_classes, help="for .weights.h5 files")
    check.add_argument("--model", help="zoo model name, for .weights.h5 files")
    check.add_argument("--batch-size", type=number(int, 1, high=65536), default=64)
    check.add_argument("--out", help="write the results as JSON here")
    check.add_argument(
        "--ceiling",
        choices=("constant", "mean", "per-image"),
        default="constant",
        help="divide alignment by 0.65753 (constant), the set's mean measured ceiling, "
        "or each image's own (mean, per-image: --ceilings of `harmonize clickme2`)",
    )
    check.add_argument("--ceilings", help="the ceilings.json written by `harmonize clickme2` with --data")
    check.set_defaults(run=evaluate, flags=flag_names(check))


def _check_out(out: str | None) -> None:
    """Refuse an --out that can never be written before anything is computed."""
    if out is None:
        return
    if os.path.isdir(out):
        raise UsageError(f"--out {out} is a folder: name the JSON file to write")
    parent = os.path.dirname(os.path.abspath(out))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise UsageError(f"--out {out}: {parent} is not a folder")


def _run_model(weights: str) -> str:
    """The model file of a run folder given as --weights (``weights`` itself for a file)."""
    if not os.path.isdir(weights):
        return weights
    from harmonization.training.resume import MODEL, TIMM_MODEL

    found = [os.path.join(weights, name) for name in (MODEL, TIMM_MODEL) if os.path.isfile(os.path.join(weights, name))]
    if not found:
        raise UsageError(
            f"--weights {weights}: a folder without {MODEL} or {TIMM_MODEL} (not a complete `harmonize train` run)"
        )
    return found[0]


def evaluate(args: argparse.Namespace) -> dict:
    """Evaluate ``--weights`` on ``--data`` (and ``--conflict``); print, then write ``--out``."""
    args.weights = _run_model(args.weights)
    if not os.path.isfile(args.weights):
        raise UsageError(f"weights file not found: {args.weights}")
    _check_out(args.out)
    if args.out:
        refuse_input_as_output("--out", [args.out], [args.weights, args.data, args.conflict, args.ceilings])
    if args.ceilings and args.ceiling == "constant":
        raise UsageError("--ceilings is read with --ceiling mean or --ceiling per-image only")
    from harmonization.clickme import resolve_shards
    from harmonization.clickme2.denominator import load_denominator
    from harmonization.evaluation import ClickMeEvaluator, public
    from harmonization.files import write_json
    from harmonization.inputs.keras_data import evaluation_data
    from harmonization.models import MODEL_NAMES, load_harmonized
    from harmonization.tensorflow_free import tensorflow_unimportable

    denominator = load_denominator(args.ceiling, args.ceilings, resolve_shards(args.data, "ClickMe shard"))

    if args.weights.endswith(".weights.h5") and args.model not in MODEL_NAMES:
        raise UsageError(
            f"{args.weights} holds weights only: pass --model (one of "
            f"{', '.join(MODEL_NAMES)}), --num-classes and --image-size"
        )
    with tensorflow_unimportable():  # off TensorFlow, Keras's legacy-file reading would import it
        model = load_harmonized(args.weights, args.model, args.num_classes, args.image_size)
    evaluator = ClickMeEvaluator(model)  # refuses a model it cannot evaluate, in one line
    model_size = model.input_shape[1]
    if args.image_size and model_size is not None and args.image_size != model_size:
        raise UsageError(
            f"--image-size {args.image_size} does not fit {args.weights}, which takes "
            f"{model_size}x{model_size} pixels (leave --image-size out to use that)"
        )
    shape = dict(
        batch_size=args.batch_size,
        image_size=args.image_size or int(model_size),
        num_classes=int(model.output_shape[-1]),
    )
    result = evaluator(evaluation_data(args.data, args.split, **shape), denominator=denominator)
    print_evaluation(os.path.basename(args.weights), result)  # shown before anything else can fail
    conflict = None
    if args.conflict:
        conflict = evaluator(evaluation_data(args.conflict, args.split, **shape))
        print(conflict_line(conflict), flush=True)
    payload = {
        "weights": args.weights,
        "data": args.data,
        "evaluation": public(result),
        "conflict": None
        if conflict is None
        else {"data": args.conflict, "accuracy": conflict["accuracy"], "count": conflict["count"]},
    }
    if args.out:
        write_json(args.out, payload)
        print(f"wrote {args.out}")
    return payload
