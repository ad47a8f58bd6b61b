"""Does the harmonizer's default recipe train on data it was not tuned for? Control vs harmonized on
the synthetic test beds (``harmonization.data.testbeds``) over several seeds, through the CLIs.

Each (test bed, seed) cell writes its data, trains a control (lambda 0) and a harmonized model
(lambda 0.5) with the README's small-data recipe (`harmonize train --model small_cnn_plain
--optimizer adam --lr 1e-3 --warmup-epochs 1 --lambda-ramp-epochs 1 --min-crop-area 1
--val-split test`, the default lambda schedule unless --lambda-schedule), evaluates both (`harmonize
evaluate`) and attacks both with minimal L2 PGD on the first --attack-limit stimuli (`adv-align
attack`). Prints per cell: accuracy,
human alignment, conflict accuracy, adversarial alignment and tolerance of both, and whether the
harmonized run collapsed (accuracy near chance, ``harmonization.metrics.near_chance``) or fell more
than 0.05 below its control; writes benchmarks/results/harmonizer_robustness[-TAG].json after
every cell, with every finished cell in the output folder (so runs with different --seeds can
share it in parallel). Finished stages are reused, so a killed run resumes where it stopped.
Run: nice python benchmarks/harmonizer_robustness.py [--kinds edges,stripes,neighbour]
     [--seeds 0,1,2,3,4] [--epochs 12] [--out harmonizer-robustness-output] [--lambda-schedule linear]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import pathlib
import subprocess
import sys
import time

from harmonization.data.testbeds import write_testbed
from harmonization.files import write_json
from harmonization.metrics import near_chance, summarize

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
ARMS = {"control": 0.0, "harmonized": 0.5}
MEASURES = ("accuracy", "human_alignment", "conflict_accuracy", "adversarial_alignment", "tolerance")
ACCURACY_MARGIN = 0.05


def run(*command: object) -> None:
    """Run one CLI step (python -m ...) with its output shown; stop the benchmark if it fails."""
    command = [sys.executable, "-m", *map(str, command)]
    print(f"[{time.strftime('%H:%M:%S')}] $ {' '.join(command[3:])}", flush=True)
    subprocess.run(command, check=True)


def train(folder: pathlib.Path, splits: dict, lam: float, seed: int, args: argparse.Namespace) -> pathlib.Path:
    if not (folder / "summary.json").exists():
        schedule = ["--lambda-schedule", args.lambda_schedule] if args.lambda_schedule else []
        run(
            "harmonization.cli",
            "train",
            "--model",
            "small_cnn_plain",
            "--train",
            splits["train"],
            "--val",
            splits["val"],
            "--val-split",
            "test",
            "--image-size",
            splits["image_size"],
            "--num-classes",
            splits["num_classes"],
            "--epochs",
            args.epochs,
            "--lambda",
            lam,
            "--optimizer",
            "adam",
            "--lr",
            1e-3,
            "--warmup-epochs",
            1,
            "--lambda-ramp-epochs",
            1,
            "--min-crop-area",
            1,
            "--seed",
            seed,
            "--alignment-batches",
            2,
            *schedule,
            "--out",
            folder,
        )
    return folder / "model.keras"


def evaluate(folder: pathlib.Path, splits: dict) -> dict:
    out = folder / "evaluation.json"
    if not out.exists():
        run(
            "harmonization.cli",
            "evaluate",
            "--weights",
            folder / "model.keras",
            "--data",
            splits["val"],
            "--conflict",
            splits["conflict"],
            "--split",
            "test",
            "--out",
            out,
        )
    return json.loads(out.read_text())


def attack(folder: pathlib.Path, splits: dict, models: dict[str, pathlib.Path], limit: int) -> dict[str, dict]:
    out = folder / "attacks"

    def finished() -> dict[str, dict]:
        if not (out / "summary.csv").exists():
            return {}
        with open(out / "summary.csv") as handle:
            return {row["model"]: row for row in csv.DictReader(handle) if row["attack"] == "l2_pgd"}

    if not set(models) <= set(finished()):  # the summary lists the models attacked so far
        specs = ",".join(f"{name}={path}" for name, path in models.items())
        run(
            "attacks_torch.cli",
            "attack",
            "--models",
            specs,
            "--stimuli",
            splits["stimuli"],
            "--out",
            out,
            "--attack",
            "l2_pgd",
            "--limit",
            limit,
            "--no-progress",
        )
    return finished()


def cell(kind: str, seed: int, args: argparse.Namespace) -> dict:
    """Both arms of one test bed and seed: the measures, and the collapse verdict (reused from
    the cell's result.json when it has one)."""
    folder = args.out / kind / f"seed-{seed}"
    if (folder / "result.json").exists():
        result = json.loads((folder / "result.json").read_text())
        if result.get("epochs") != args.epochs:
            sys.exit(f"{folder}: trained for {result.get('epochs')} epochs, not {args.epochs}; pass another --out")
        return result
    splits = write_testbed(kind, folder / "data", seed=seed)
    models = {arm: train(folder / arm, splits, lam, seed, args) for arm, lam in ARMS.items()}
    evaluations = {arm: evaluate(folder / arm, splits) for arm in ARMS}
    attacks = attack(folder, splits, models, args.attack_limit)
    result: dict = {"num_classes": splits["num_classes"], "epochs": args.epochs}
    for arm in ARMS:
        evaluation = evaluations[arm]
        result[arm] = {
            "accuracy": evaluation["evaluation"]["accuracy"],
            "human_alignment": evaluation["evaluation"]["spearman"]["mean"],
            "conflict_accuracy": evaluation["conflict"]["accuracy"],
            "adversarial_alignment": float(attacks[arm]["alignment_mean"]),
            "tolerance": float(attacks[arm]["l2_mean"]),
        }
    harmonized, control = result["harmonized"]["accuracy"], result["control"]["accuracy"]
    result["collapsed"] = near_chance(harmonized, splits["num_classes"])
    result["within_margin"] = harmonized >= control - ACCURACY_MARGIN
    write_json(folder / "result.json", result)
    return result


def finished_cells(out: pathlib.Path, kinds: list[str]) -> dict[str, dict]:
    """Every finished cell under ``out`` (also those of other runs of this script, e.g. one per
    seed in parallel), by "kind/seed"."""
    cells = {}
    for kind in kinds:
        for path in sorted((out / kind).glob("seed-*/result.json"), key=lambda p: int(p.parent.name[5:])):
            cells[f"{kind}/{path.parent.name[5:]}"] = json.loads(path.read_text())
    return cells


def summary(cells: dict[str, dict]) -> dict:
    gains = {m: [c["harmonized"][m] - c["control"][m] for c in cells.values()] for m in MEASURES}
    return {
        "runs": len(cells),
        "collapsed": sum(c["collapsed"] for c in cells.values()),
        "within_margin": sum(c["within_margin"] for c in cells.values()),
        "gain": {m: {**summarize(v), "positive": sum(x > 0 for x in v)} for m, v in gains.items()},
    }


def print_table(cells: dict[str, dict]) -> None:
    print(f"\n{'cell':<14s}" + "".join(f"{m:>28s}" for m in MEASURES) + "  collapsed  within 0.05")
    for name, c in cells.items():
        values = "".join(f"{c['control'][m]:>13.3f} -> {c['harmonized'][m]:<10.3f}" for m in MEASURES)
        print(f"{name:<14s}{values}  {str(c['collapsed']):>9s}  {str(c['within_margin']):>11s}")
    report = summary(cells)
    print(
        f"\n{report['collapsed']} of {report['runs']} harmonized runs collapsed; "
        f"{report['within_margin']} within {ACCURACY_MARGIN} of their control's accuracy"
    )
    for m, gain in report["gain"].items():
        print(
            f"  gain in {m:<22s} {gain['mean']:+.3f} ± {gain['sem']:.3f}  (> 0 in {gain['positive']} of {report['runs']})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", default="edges,stripes,neighbour")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument(
        "--attack-limit", type=int, default=48, help="stimuli attacked per model (the first N of the 25 per class)"
    )
    parser.add_argument(
        "--lambda-schedule",
        choices=("adaptive", "linear"),
        default=None,
        help="passed to harmonize train (default: its default)",
    )
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "harmonizer-robustness-output")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    tag = f"-{args.lambda_schedule}" if args.lambda_schedule else ""
    args.out = args.out.with_name(args.out.name + tag)
    results = RESULTS / f"harmonizer_robustness{tag}.json"
    kinds = args.kinds.split(",")
    for seed in (int(s) for s in args.seeds.split(",")):  # every test bed once before any twice
        for kind in kinds:
            cell(kind, seed, args)
            cells = finished_cells(args.out, kinds)
            write_json(
                results,
                {
                    "epochs": args.epochs,
                    "attack_limit": args.attack_limit,
                    "lambda_schedule": args.lambda_schedule or "default",
                    "cells": cells,
                    "summary": summary(cells),
                },
            )
    print_table(finished_cells(args.out, kinds))


if __name__ == "__main__":
    main()
