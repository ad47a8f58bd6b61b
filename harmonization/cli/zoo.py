"""``harmonize zoo`` and ``harmonize check-accuracy``: the published harmonized models."""
from __future__ import annotations

import argparse
import json

from harmonization.cli.common import UsageError, flag_names, positive_int

PUBLISHED_PREFIX = "published:"


def add_zoo_parser(commands) -> None:
    """Add the ``zoo`` subcommand: list the published files and where to download them."""
    listing = commands.add_parser("zoo", help="list the published harmonized models (names, files, "
                                              "sizes, download location)")
    listing.add_argument("--json", action="store_true", help="print the table as JSON")
    listing.set_defaults(run=zoo, flags=flag_names(listing))


def zoo(args: argparse.Namespace) -> None:
    from harmonization.imagenet_check import format_zoo
    from harmonization.models.published import zoo_table

    print(json.dumps(zoo_table(), indent=1) if args.json else format_zoo())


def add_check_parser(commands) -> None:
    """Add the ``check-accuracy`` subcommand: a published file's ImageNet top-1 / top-5."""
    check = commands.add_parser(
        "check-accuracy", help="top-1 / top-5 of a published model on ImageNet validation images, "
                               "beside the accuracy the Harmonization paper reports")
    check.add_argument("--model", required=True, help="published:NAME:PATH (harmonize zoo lists the names)")
    check.add_argument("--imagenet-val", required=True,
                       help="ImageNet validation images: a folder of class folders, or TFRecord shards")
    check.add_argument("--batch-size", type=positive_int, default=32)
    check.add_argument("--limit", type=positive_int, default=None, help="stop after this many images")
    check.add_argument("--out", default=None, help="also write the result as JSON here")
    check.set_defaults(run=check_accuracy, flags=flag_names(check))


def published_model(text: str) -> tuple[str, str]:
    """(NAME, PATH) of a ``published:NAME:PATH`` argument."""
    from harmonization.models.published import PUBLISHED_NAMES

    parts = text.split(":", 2)
    if len(parts) != 3 or parts[0] + ":" != PUBLISHED_PREFIX or not parts[2]:
        raise UsageError(f"--model {text!r}: expected published:NAME:PATH")
    if parts[1] not in PUBLISHED_NAMES:
        raise UsageError(f"--model {text!r}: unknown published model {parts[1]!r}; "
                         f"expected one of {', '.join(PUBLISHED_NAMES)}")
    return parts[1], parts[2]


def check_accuracy(args: argparse.Namespace) -> dict:
    from harmonization.files import write_json
    from harmonization.imagenet_check import check_published, format_check

    name, path = published_model(args.model)
    result = check_published(name, path, args.imagenet_val, batch_size=args.batch_size, limit=args.limit)
    print(format_check(result), flush=True)
    if args.out:
        write_json(args.out, result)
    return result
