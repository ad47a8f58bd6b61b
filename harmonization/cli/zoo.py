"""``harmonize zoo`` and ``harmonize check-accuracy``: the published harmonized models."""

from __future__ import annotations

import argparse
import json

from harmonization.cli.common import positive_int, refuse_input_as_output
from harmonization.cli.toolkit import UsageError, flag_names
from harmonization.model_names import parse_published


def add_zoo_parser(commands) -> None:
    """Add the ``zoo`` subcommand: list the published files and where to download them."""
    listing = commands.add_parser(
        "zoo", help="list the published harmonized models (names, files, sizes, download location)"
    )
    listing.add_argument("--json", action="store_true", help="print the table as JSON")
    listing.set_defaults(run=zoo, flags=flag_names(listing))


def zoo(args: argparse.Namespace) -> None:
    from harmonization.models.published import zoo_table

    print(json.dumps(zoo_table(), indent=1) if args.json else format_zoo())


def add_check_parser(commands) -> None:
    """Add the ``check-accuracy`` subcommand: a published file's ImageNet top-1 / top-5."""
    check = commands.add_parser(
        "check-accuracy",
        help="top-1 / top-5 of a published model on ImageNet validation images, "
        "beside the accuracy the Harmonization paper reports",
    )
    check.add_argument("--model", required=True, help="published:NAME:PATH (harmonize zoo lists the names)")
    check.add_argument(
        "--imagenet-val",
        required=True,
        help="ImageNet validation images: a folder of class folders, or TFRecord shards",
    )
    check.add_argument("--batch-size", type=positive_int, default=32)
    check.add_argument("--limit", type=positive_int, default=None, help="stop after this many images")
    check.add_argument("--out", default=None, help="also write the result as JSON here")
    check.set_defaults(run=check_accuracy, flags=flag_names(check))


def published_model(text: str) -> tuple[str, str]:
    """(NAME, PATH) of a ``published:NAME:PATH`` argument."""
    from harmonization.models.published import PUBLISHED_NAMES

    try:
        name, path = parse_published(text, what="--model")
    except ValueError as error:
        raise UsageError(str(error)) from None
    if name not in PUBLISHED_NAMES:
        raise UsageError(
            f"--model {text!r}: unknown published model {name!r}; expected one of {', '.join(PUBLISHED_NAMES)}"
        )
    return name, path


def check_accuracy(args: argparse.Namespace) -> dict:
    from harmonization.files import write_json
    from harmonization.imagenet_check import check_published

    name, path = published_model(args.model)
    if args.out:
        refuse_input_as_output("--out", [args.out], [path, args.imagenet_val])
    result = check_published(name, path, args.imagenet_val, batch_size=args.batch_size, limit=args.limit)
    print(format_check(result), flush=True)
    if args.out:
        write_json(args.out, result)
    return result


def format_check(result: dict) -> str:
    """The one-paragraph summary ``harmonize check-accuracy`` prints."""
    reported = result["reported_top1"]
    versus = (
        "no top-1 reported for this model"
        if reported is None
        else f"reported {reported:.1f} (read off the reference's figure, about +-0.5); "
        f"difference {result['top1_minus_reported']:+.1f}"
    )
    return (
        f"{result['model']} ({result['file']}) on {result['images']} ImageNet validation images: "
        f"top-1 {result['top1']:.2f}%, top-5 {result['top5']:.2f}%; {versus}"
    )


def format_zoo() -> str:
    """The ``harmonize zoo`` listing: the published files, their size, where to download them."""
    from harmonization.models.published import zoo_table

    lines = [
        "name            file                            size (float32 weights)  reported top-1 / alignment  download"
    ]
    for row in zoo_table():
        reported = (
            "-" if row["reported_top1"] is None else f"{row['reported_top1']:.1f} / {row['reported_alignment']:.0f}"
        )
        lines.append(
            f"{row['name']:15s} {row['file']:31s} about {row['approximate_megabytes']:4d} MB"
            f"{'':11s} {reported:27s} {row['url']}"
        )
    lines.append(
        "Download a file yourself (nothing here downloads), then load it with published:NAME:PATH; any file name works."
    )
    return "\n".join(lines)
