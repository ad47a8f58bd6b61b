"""`harmonize`: train a Keras model with the neural harmonizer, evaluate its human alignment,
write ClickMe-mini or another synthetic test bed, list and check the published harmonized models.

    harmonize train --model small_cnn --train 'mini/train-*' --val 'mini/val-*' --epochs 8 --out run
    harmonize evaluate --weights run/model.keras --data 'mini/val-*' --conflict 'mini/conflict-*'
    harmonize mini --out mini --seed 0 [--kind edges]
    harmonize zoo
    harmonize check-accuracy --model published:vgg16:vgg16_harmonized.h5 --imagenet-val imagenet/val
    harmonize clickme2 clicks.csv --images imagenet/val --out clickme2

Exit codes: 0 done (also for a run that was already complete), 2 a bad argument, input or output
(one line on stderr naming it), 3 a training run stopped by the collapse guard (one line on stderr;
its history.csv and backup are kept), 130 interrupted by Ctrl-C (one line).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from harmonization.cli import clickme2, evaluate, mini, train, zoo
from harmonization.cli.common import PROG
from harmonization.cli.toolkit import USAGE, OneLineParser, one_line

COLLAPSED = 3
"""Exit code of a training run stopped by the collapse guard."""
INTERRUPTED = 130
"""Exit code after Ctrl-C (SIGINT), as a shell reports it."""

SUBCOMMANDS = (
    train.add_parser,
    evaluate.add_parser,
    mini.add_parser,
    zoo.add_zoo_parser,
    zoo.add_check_parser,
    clickme2.add_parser,
)
"""One function per subcommand, each adding its parser (with ``run`` and ``flags`` defaults)."""


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog=PROG, description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for add_parser in SUBCOMMANDS:
        add_parser(commands)
    return parser


def _failure(error: BaseException, flags: dict[str, str]) -> tuple[int, str] | None:
    """(exit code, one-line message) for an error caused by the arguments, inputs, outputs or a
    collapsed run; None for a bug (which keeps its traceback)."""
    message = one_line(error, flags)
    if message is not None:
        run_errors = sys.modules.get("harmonization.training.errors")
        collapsed = run_errors is not None and isinstance(error, run_errors.TrainingCollapsed)
        return (COLLAPSED if collapsed else USAGE), message
    if "harmonization.data" in sys.modules:  # a bad record met while TensorFlow reads shards
        from harmonization.data import describe_data_error

        message = describe_data_error(error)
        return None if message is None else (USAGE, message)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``harmonize`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except KeyboardInterrupt:  # files are written atomically: what was written is intact
        parser.exit(INTERRUPTED, f"{PROG}: interrupted; files written so far are intact (rerun to resume or redo)\n")
    except Exception as error:
        failure = _failure(error, args.flags)
        if failure is None:
            raise
        code, message = failure
        label = "stopped" if code == COLLAPSED else "error"
        parser.exit(code, f"{PROG}: {label}: {message}\n")
    return 0
