"""The ``adv-align`` argument parser: every command's flags, their bounds and defaults (``SweepConfig``'s),
and the attack-option flags turned into the attack's options."""

from __future__ import annotations

import argparse
import dataclasses
import json

from attacks_torch.attacks import PROJECTIONS
from attacks_torch.attacks.registry import ATTACK_REGISTRY
from attacks_torch.models import WEIGHTS
from attacks_torch.models.factory import MAX_CLASSES
from attacks_torch.search import SCHEDULES
from attacks_torch.sweep import SweepConfig
from attacks_torch.sweep.config import DEVICES, MAX_SEED
from harmonization.cli.toolkit import OneLineParser, UsageError, within

# option flag -> (the attacks it applies to, its option in the attack registry)
OPTION_FLAGS = {
    "pgd_steps": (("l2_pgd", "linf_pgd"), "steps"),
    "pgd_step_size": (("l2_pgd", "linf_pgd"), "step_size"),
    "projection": (("l2_pgd", "linf_pgd"), "projection"),
    "cw_const": (("cw_l2",), "initial_const"),
    "cw_steps": (("cw_l2",), "steps"),
    "cw_lr": (("cw_l2",), "step_size"),
    "ddn_steps": (("ddn",), "steps"),
    "ddn_gamma": (("ddn",), "gamma"),
}
FIELDS = {f.name: f.default for f in dataclasses.fields(SweepConfig)}
"""SweepConfig's fields and their defaults: the flags' defaults."""
# library argument -> flag, for the library's error messages (the rest are --name-with-dashes)
FLAGS = {
    "out_dir": "--out",
    **{name: f"--{name.replace('_', '-')}" for name in FIELDS},
    "fresh": "--fresh",
    "models": "--models",
    "pairs": "--pairs",
    "arch_overrides": "--arch",
}

MAX_EPS = 1e4
"""The largest eps bound or step accepted: beyond the L2 diameter of any image up to 5000 x 5000 px."""
BIG = 10**6
COUNT = within(int, 1, BIG)  # steps, images, ...
EPS = within(float, 0, MAX_EPS, include_low=False)  # eps bounds, steps


def build_parser() -> OneLineParser:
    """The parser of ``adv-align`` and its four commands."""
    parser = OneLineParser(prog="adv-align", description="Adversarial alignment of image classifiers with humans.")
    commands = parser.add_subparsers(dest="command", required=True)

    attack = commands.add_parser("attack", help="attack models on stimuli; resumable, torchrun-ready")
    attack.add_argument(
        "--models", required=True, help="comma-separated [label=]spec[@checkpoint] items, or a file with one per line"
    )
    attack.add_argument("--stimuli", required=True, help="ClickMe TFRecord path or glob (either layout)")
    attack.add_argument("--out", required=True, help="output folder (shared by jobs; resumed when rerun)")
    attack.add_argument("--attack", default=FIELDS["attack"], choices=tuple(ATTACK_REGISTRY))
    attack.add_argument("--batch-size", type=within(int, 1, 65536), default=FIELDS["batch_size"])
    attack.add_argument("--device", default=FIELDS["device"], choices=DEVICES)
    attack.add_argument(
        "--schedule", default=FIELDS["schedule"], choices=SCHEDULES, help="eps search of the PGD attacks"
    )
    attack.add_argument("--lo", type=EPS, default=FIELDS["lo"])
    attack.add_argument("--hi", type=EPS, default=FIELDS["hi"])
    attack.add_argument("--tol", type=EPS, default=FIELDS["tol"], help="search tolerance (default: the schedule's)")
    attack.add_argument(
        "--limit", type=within(int, 1, 10**9), default=FIELDS["limit"], help="attack the first N stimuli only"
    )
    attack.add_argument("--seed", type=within(int, 0, MAX_SEED), default=FIELDS["seed"])
    attack.add_argument(
        "--weights",
        default=FIELDS["weights"],
        choices=WEIGHTS,
        help="timm names without @checkpoint: hub weights or a seeded random init",
    )
    attack.add_argument(
        "--num-classes",
        type=within(int, 2, MAX_CLASSES),
        default=FIELDS["num_classes"],
        help="size of the timm models' head",
    )
    attack.add_argument("--pairs", default=None, help="CONTROL=HARMONIZED labels (comma-separated, or a file)")
    attack.add_argument(
        "--keep-maps",
        type=within(int, 0, BIG),
        default=FIELDS["keep_maps"],
        help="perturbation maps kept per model (report)",
    )
    attack.add_argument("--threads", type=within(int, 1, 1024), default=None, help="torch CPU threads per process")
    attack.add_argument(
        "--fresh",
        action="store_true",
        help="start over the models whose folder was started with other settings (instead of refusing)",
    )
    attack.add_argument(
        "--attack-options",
        default=None,
        metavar="JSON",
        help="options of the attack as a JSON object, e.g. '{\"steps\": 5}' (the flags below win)",
    )
    attack.add_argument("--pgd-steps", type=COUNT, default=None, help="PGD steps per eps")
    attack.add_argument(
        "--pgd-step-size", type=EPS, default=None, help="PGD step size in [0, 1] pixel units (default 0.5, the paper's)"
    )
    attack.add_argument("--projection", default=None, choices=PROJECTIONS, help="PGD projection onto the eps set")
    attack.add_argument(
        "--cw-const", type=within(float, 0, 1e10, include_low=False), default=None, help="C&W initial constant"
    )
    attack.add_argument("--cw-steps", type=COUNT, default=None, help="C&W optimisation steps per constant")
    attack.add_argument("--cw-lr", type=EPS, default=None, help="C&W learning rate")
    attack.add_argument("--ddn-steps", type=COUNT, default=None, help="DDN steps")
    attack.add_argument(
        "--ddn-gamma",
        type=within(float, 0, 1, include_low=False, include_high=False),
        default=None,
        help="DDN factor of the eps change per step",
    )
    attack.add_argument("--no-progress", action="store_true", help="no progress bars")
    attack.add_argument(
        "--ceiling",
        default=None,
        choices=("constant", "mean", "per-image"),
        help="also divide alignment by a human ceiling in summary.json (mean, per-image: --ceilings)",
    )
    attack.add_argument("--ceilings", default=None, help="the ceilings.json of `harmonize clickme2` for --stimuli")
    attack.add_argument(
        "--no-human-alignment",
        action="store_true",
        help="do not measure the models' human alignment (saliency vs the human maps)",
    )
    attack.add_argument(
        "--tf32",
        action=argparse.BooleanOptionalAction,
        default=FIELDS["tf32"],
        help="let CUDA round matrix products and convolutions to TF32 (faster, less exact)",
    )

    score = commands.add_parser("score", help="human alignment of models on stimuli, without attacks; resumable")
    score.add_argument("--models", required=True, help="as for attack")
    score.add_argument("--stimuli", required=True, help="ClickMe TFRecord path or glob (either layout)")
    score.add_argument("--out", required=True, help="output folder (the sweep's; resumed when rerun)")
    score.add_argument("--batch-size", type=within(int, 1, 65536), default=FIELDS["batch_size"])
    score.add_argument("--device", default=FIELDS["device"], choices=DEVICES)
    score.add_argument(
        "--limit", type=within(int, 1, 10**9), default=FIELDS["limit"], help="score the first N stimuli only"
    )
    score.add_argument("--seed", type=within(int, 0, MAX_SEED), default=FIELDS["seed"])
    score.add_argument("--weights", default=FIELDS["weights"], choices=WEIGHTS)
    score.add_argument(
        "--num-classes",
        type=within(int, 2, MAX_CLASSES),
        default=FIELDS["num_classes"],
        help="size of the timm models' head",
    )
    score.add_argument("--threads", type=within(int, 1, 1024), default=None, help="torch CPU threads per process")
    score.add_argument("--fresh", action="store_true", help="start over the models scored with other settings")

    report = commands.add_parser("report", help="figures, statistics and report.md of a finished sweep")
    report.add_argument("dir", help="the sweep's output folder")
    report.add_argument("--out", required=True, help="report folder")
    report.add_argument("--accuracy", default=None, help="CSV with columns model, top1 (timm's results format)")
    report.add_argument("--pairs", default=None, help="CONTROL=HARMONIZED labels, added to DIR/pairs.csv's")
    report.add_argument("--arch", default=None, help="class overrides LABEL=CNN|ViT|hybrid, comma-separated")
    report.add_argument("--panels", type=within(int, 0, 64), default=4, help="images in the qualitative panel")

    listing = commands.add_parser("zoo", help="list the paper's model zoo (Table S1)")
    listing.add_argument("--family", default=None, help="one family, e.g. swin, 'General ViT'")
    listing.add_argument("--arch", default=None, help="cnn, vit or hybrid")
    listing.add_argument("--count", action="store_true", help="counts per family instead of names")
    listing.add_argument(
        "--all", action="store_true", help="every matching pretrained timm model, not the default list"
    )
    return parser


def attack_options(args: argparse.Namespace) -> dict:
    """The attack options of ``--attack-options`` and the option flags (flags win); one line naming
    the flag for JSON that is not an object, or a flag of another attack."""
    options = {}
    if args.attack_options is not None:
        try:
            options = json.loads(args.attack_options)
        except json.JSONDecodeError as error:
            raise UsageError(f"--attack-options: not valid JSON ({error})") from None
        if not isinstance(options, dict):
            raise UsageError(f"--attack-options: expected a JSON object, got {args.attack_options!r}")
    for dest, (attacks, option) in OPTION_FLAGS.items():
        value = getattr(args, dest)
        if value is None:
            continue
        if args.attack not in attacks:
            raise UsageError(
                f"--{dest.replace('_', '-')} is an option of {' and '.join(attacks)}, not of {args.attack}"
            )
        options[option] = value
    return options
