"""``adv-align``: attack models on ClickMe stimuli, report the paper's figures, list the model zoo.

    adv-align attack --models NAMES|FILE --stimuli PATH --out DIR [--attack l2_pgd] [--batch-size B]
                     [--device cpu|cuda] [--schedule ladder|reference|secant] [--lo L] [--hi H] [--limit N]
                     [--seed S] [--weights pretrained|random] [--num-classes C] [--pairs CONTROL=HARMONIZED]
                     [--attack-options JSON] [--pgd-steps N] [--pgd-step-size S] [--projection sphere|ball]
                     [--cw-const C] [--cw-steps N] [--cw-lr LR] [--ddn-steps N] [--ddn-gamma G] [--fresh]
                     [--no-human-alignment] [--tf32]
    adv-align score --models NAMES|FILE --stimuli PATH --out DIR [--batch-size B] [--device cpu|cuda] [--limit N]
                    [--weights pretrained|random] [--num-classes C] [--fresh]   (human alignment only)
    adv-align report DIR [--accuracy CSV] --out REPORT_DIR [--pairs ...] [--arch LABEL=CLASS,...]
    adv-align zoo [--family F] [--arch cnn|vit|hybrid] [--count] [--all]

Exit codes: 0 when every model finished; 1 when some model failed (its error is in
OUT/<model>/<attack>/failed.json and OUT/summary.csv; the others still ran); 2 for bad input or an
output that cannot be written (one line on stderr naming the flag or the file; batches already
attacked are kept, and the same command resumes them); 130 on Ctrl-C (one line; the same).
Every number is bounded (``harmonization.cli.toolkit``), the defaults are ``SweepConfig``'s, and
``--out`` may not be one of the command's inputs (a model file, a stimulus file, the sweep folder
being reported). Under ``torchrun`` only rank 0 prints.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

from attacks_torch import zoo
from attacks_torch.arguments import check_not_input, check_output, inside
from attacks_torch.cli_parser import FIELDS, FLAGS, attack_options, build_parser
from attacks_torch.models import model_kind, parse_published
from attacks_torch.stimuli import stimulus_files
from attacks_torch.sweep import SweepConfig, SweepFolder, parse_models, parse_pairs
from attacks_torch.sweep.scoring import attack_and_score, score_models
from harmonization.cli.toolkit import USAGE, UsageError, one_line


def _model_files(models: list) -> list[tuple[str, str]]:
    """(what, path) of every file the models are loaded from."""
    files = []
    for spec in models:
        kind = model_kind(spec.spec)
        if kind in ("keras", "published"):
            files.append(("model file", spec.spec if kind == "keras" else parse_published(spec.spec)[1]))
        if spec.checkpoint:
            files.append(("checkpoint", spec.checkpoint))
    return files


def _attack_inputs(args: argparse.Namespace, models: list) -> list[tuple[str, str]]:
    """(what, path) of everything ``adv-align attack`` reads."""
    inputs = [
        ("stimuli", args.stimuli),
        ("models list", args.models),
        ("pairs file", getattr(args, "pairs", "") or ""),
        ("ceilings file", getattr(args, "ceilings", "") or ""),
        *_model_files(models),
    ]
    try:
        inputs += [("stimulus file", path) for path in stimulus_files(args.stimuli)]
    except FileNotFoundError:
        pass  # the sweep names the missing stimuli itself
    return inputs


def _config(args: argparse.Namespace, **settings) -> SweepConfig:
    """The SweepConfig of the flags that set its fields (``settings`` for the others)."""
    given = {name: getattr(args, name) for name in FIELDS if hasattr(args, name) and name not in settings}
    return SweepConfig(**given, **settings)


def _attack(args: argparse.Namespace) -> int:
    check_output("--out", args.out)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = _config(args, attack_options=attack_options(args), progress=not args.no_progress)
    models = parse_models(args.models)
    pairs = parse_pairs(args.pairs) if args.pairs else []
    check_not_input("--out", args.out, _attack_inputs(args, models))
    denominator = None
    if args.ceilings and args.ceiling in (None, "constant"):
        raise ValueError("--ceilings is read with --ceiling mean or --ceiling per-image only")
    if args.ceiling is not None:
        from harmonization.clickme import resolve_shards
        from harmonization.clickme2.denominator import load_denominator

        denominator = load_denominator(args.ceiling, args.ceilings, resolve_shards(args.stimuli, "stimulus file"))
    outcomes = attack_and_score(
        models, config, args.out, pairs, fresh=args.fresh, human=not args.no_human_alignment, denominator=denominator
    )
    return _print_outcomes(outcomes)


def _score(args: argparse.Namespace) -> int:
    check_output("--out", args.out)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = _config(args, progress=False)
    models = parse_models(args.models)
    check_not_input("--out", args.out, _attack_inputs(args, models))
    outcomes = score_models(models, config, args.out, fresh=args.fresh)
    return _print_outcomes(outcomes)


def _print_outcomes(outcomes: list) -> int:
    if int(os.environ.get("RANK", "0")) == 0:
        for outcome in outcomes:
            line = f"{outcome.label} [{outcome.attack}]: {outcome.status}"
            print(
                line if outcome.error is None else f"{line}: {outcome.error}",
                file=sys.stdout if outcome.error is None else sys.stderr,
            )
    return 1 if any(o.status == "failed" for o in outcomes) else 0


def _report(args: argparse.Namespace) -> int:
    from attacks_torch.report import build_report, parse_arch_overrides

    check_output("--out", args.out)
    check_not_input(
        "--out",
        args.out,
        [("sweep folder", args.dir), ("accuracy CSV", args.accuracy or ""), ("pairs file", args.pairs or "")],
    )
    if os.path.isdir(args.dir):
        for folder in SweepFolder(args.dir).model_folders():
            if inside(args.out, str(folder.path)):
                raise UsageError(
                    f"--out {args.out}: lies in the model folder {folder.path} of the sweep "
                    "being reported; choose another output"
                )
    overrides = parse_arch_overrides(args.arch) if args.arch else {}
    pairs = parse_pairs(args.pairs) if args.pairs else []
    path = build_report(
        args.dir, args.out, accuracy_csv=args.accuracy, pairs=pairs, arch_overrides=overrides, panels=args.panels
    )
    print(path)
    return 0


def _zoo(args: argparse.Namespace) -> int:
    families = zoo.select_families(args.family, args.arch)
    if args.count:
        total = 0
        for family in families:
            names = zoo.timm_models(family.name) if args.all else family.models
            total += len(names)
            print(f"{family.name}\t{family.arch}\t{len(names)}")
        print(f"total\t\t{total}")
        return 0
    for family in families:
        for name in zoo.timm_models(family.name) if args.all else family.models:
            print(name)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run ``adv-align`` with ``argv`` (default: the command line); returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    command = {"attack": _attack, "score": _score, "report": _report, "zoo": _zoo}[args.command]
    try:
        return command(args)
    except KeyboardInterrupt:
        print(
            f"adv-align {args.command}: interrupted; what was written is kept (every file is written whole), "
            "and the same command resumes",
            file=sys.stderr,
        )
        return 130
    except (ValueError, OSError) as error:  # bad input, or an output the file system refuses
        print(f"adv-align {args.command}: error: {one_line(error, FLAGS)}", file=sys.stderr)
        return USAGE


if __name__ == "__main__":
    sys.exit(main())
