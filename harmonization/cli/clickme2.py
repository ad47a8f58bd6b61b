"""``harmonize clickme2``: the lab's ClickMe 2 click file (or clickmap file) and an image folder to
ClickMe shards, with each image's split-half human ceiling in ``ceilings.json`` (docs/clickme2.md)."""

from __future__ import annotations

import argparse
import os

from harmonization.cli.common import (
    MAX_COUNT,
    MAX_IMAGE_SIZE,
    fraction,
    positive_int,
    refuse_input_as_output,
    seed,
)
from harmonization.cli.toolkit import UsageError, flag_names, number


def add_parser(commands) -> None:
    """Add the ``clickme2`` subcommand."""
    from harmonization.clickme2.filtering import Settings

    default = Settings()
    convert = commands.add_parser("clickme2", help="convert the lab's ClickMe 2 clicks and images to shards")
    convert.add_argument("clicks", help="raw clicks (.csv, .npz) or processed clickmaps (.h5)")
    convert.add_argument("--images", required=True, help="image root: the click file's ids are CLASS/FILE under it")
    convert.add_argument("--out", required=True, help="folder for the shards, ceilings.json and parts/")
    convert.add_argument(
        "--classes",
        help="text file, one class folder per line (label = line number); "
        "default: the image root's sub-folders, sorted",
    )
    convert.add_argument("--blur-size", type=number(int, 1, high=MAX_IMAGE_SIZE), default=default.blur_size)
    convert.add_argument("--min-clicks", type=number(int, 0, high=MAX_COUNT), default=default.min_clicks)
    convert.add_argument("--max-clicks", type=positive_int, default=default.max_clicks)
    convert.add_argument("--min-subjects", type=positive_int, default=default.min_subjects)
    pixels = number(int, 1, high=MAX_IMAGE_SIZE)
    convert.add_argument("--image-shape", type=pixels, nargs=2, default=list(default.image_shape), metavar=("H", "W"))
    convert.add_argument("--center-crop", type=pixels, nargs=2, default=list(default.center_crop), metavar=("H", "W"))
    convert.add_argument(
        "--null-iterations", type=positive_int, default=default.null_iterations, help="split-half draws per image"
    )
    convert.add_argument(
        "--native-size",
        action="store_true",
        help="clicks are in the images' own pixels: maps at native size, blur scaled",
    )
    convert.add_argument("--max-kernel-size", type=pixels, default=default.max_kernel_size)
    convert.add_argument(
        "--keep-duplicates", action="store_true", help="keep repeated submissions of a participant on one image"
    )
    convert.add_argument("--catch-threshold", type=fraction, default=0.95, help="NPZ: lowest catch-trial accuracy")
    convert.add_argument("--keep-mobile", action="store_true", help="NPZ: keep participants on mobile devices")
    convert.add_argument("--include", help="only images whose id contains this text (e.g. ILSVRC2012_val)")
    convert.add_argument("--exclude", help="leave out images whose id contains this text")
    convert.add_argument("--seed", type=seed, default=0)
    convert.add_argument("--shard-size", type=positive_int, default=256)
    convert.add_argument(
        "--layout",
        choices=("stimulus", "jpeg"),
        default="stimulus",
        help="stimulus: float32 maps kept as they are; jpeg: 8-bit maps, diffused again when read",
    )
    convert.set_defaults(run=clickme2, flags=flag_names(convert))


def _classes(path: str | None) -> list[str] | None:
    if path is None:
        return None
    with open(path, encoding="utf-8") as handle:
        names = [line.strip() for line in handle if line.strip()]
    if not names:
        raise UsageError(f"--classes {path} lists no class")
    return names


def clickme2(args: argparse.Namespace) -> dict:
    """Convert ``clicks`` with the images under ``--images`` to shards in ``--out``."""
    from harmonization.clickme2.conversion import convert
    from harmonization.clickme2.filtering import Settings

    if not os.path.isfile(args.clicks):
        raise UsageError(f"click file not found: {args.clicks}")
    if not os.path.isdir(args.images):
        raise UsageError(f"--images {args.images} is not a folder")
    if args.center_crop[0] > args.image_shape[0] or args.center_crop[1] > args.image_shape[1]:
        raise UsageError(f"--center-crop {args.center_crop} exceeds --image-shape {args.image_shape}")
    refuse_input_as_output("--out", [args.out], [args.clicks, args.images, args.classes])
    if args.max_clicks <= args.min_clicks:
        raise UsageError(f"--max-clicks {args.max_clicks} must exceed --min-clicks {args.min_clicks}")
    settings = Settings(
        blur_size=args.blur_size,
        min_clicks=args.min_clicks,
        max_clicks=args.max_clicks,
        min_subjects=args.min_subjects,
        image_shape=tuple(args.image_shape),
        center_crop=tuple(args.center_crop),
        null_iterations=args.null_iterations,
        max_kernel_size=args.max_kernel_size,
        filter_duplicates=not args.keep_duplicates,
        native_size=args.native_size,
        seed=args.seed,
        include=args.include,
        exclude=args.exclude,
    )
    return convert(
        args.clicks,
        args.images,
        args.out,
        settings,
        classes=_classes(args.classes),
        shard_size=args.shard_size,
        layout=args.layout,
        catch_threshold=args.catch_threshold,
        filter_mobile=not args.keep_mobile,
    )
