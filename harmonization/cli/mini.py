"""``harmonize mini``: write ClickMe-mini (or another synthetic test bed) and print its split globs."""

from __future__ import annotations

import argparse
import json

from harmonization.cli.common import fraction, image_size, num_classes, positive_int, seed
from harmonization.cli.toolkit import flag_names


def add_parser(commands) -> None:
    """Add the ``mini`` subcommand."""
    generate = commands.add_parser("mini", help="write ClickMe-mini or another test bed, print the split globs")
    generate.add_argument("--out", required=True)
    generate.add_argument(
        "--kind",
        default="mini",  # checked by write_testbed: no TensorFlow at parse time
        help="which generated data set: mini (ClickMe-mini) or a test bed with another "
        "shortcut, objects and class count (docs/clickme-mini.md lists them)",
    )
    generate.add_argument("--seed", type=seed, default=0)
    generate.add_argument("--image-size", type=image_size, default=32)
    generate.add_argument(
        "--num-classes", type=num_classes, default=None, help="default: the kind's own (4 for ClickMe-mini)"
    )
    generate.add_argument("--train-size", type=positive_int, default=2000)
    generate.add_argument("--val-size", type=positive_int, default=400)
    generate.add_argument("--conflict-size", type=positive_int, default=400)
    generate.add_argument("--stimuli-per-class", type=positive_int, default=25)
    generate.add_argument(
        "--cue-agreement",
        type=fraction,
        default=0.9,
        help="share of train/val/stimuli images whose shortcut cue names the true class",
    )
    generate.set_defaults(run=mini, flags=flag_names(generate))


def mini(args: argparse.Namespace) -> dict:
    """Write the ``--kind`` data set to ``--out`` and print its split globs as JSON."""
    from harmonization.data.testbeds import write_testbed

    options = dict(
        image_size=args.image_size,
        train_size=args.train_size,
        val_size=args.val_size,
        conflict_size=args.conflict_size,
        stimuli_per_class=args.stimuli_per_class,
        cue_agreement=args.cue_agreement,
    )
    if args.num_classes is not None:
        options["num_classes"] = args.num_classes
    splits = write_testbed(args.kind, args.out, seed=args.seed, **options)
    print(json.dumps(splits, indent=1))
    return splits
