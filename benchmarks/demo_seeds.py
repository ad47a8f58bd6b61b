"""How much the demo's effect varies: `make demo`'s study (without the photos) over several seeds.

Each seed draws its own ClickMe-mini and trains its own control and harmonized network (TensorFlow
on CPU is not bit-reproducible either). Prints, per seed and as mean ± standard error over seeds,
the harmonized model's gain over the control in human alignment, adversarial alignment, accuracy
and conflict accuracy, and writes benchmarks/results/demo_seeds.json with the lambda schedule and
epochs it ran. Finished seeds are reused (a folder is per seed, schedule and epochs). The seed
table of docs/clickme-mini.md was measured with the one-epoch linear ramp: ``--lambda-schedule
linear`` reruns it; the default is the demo's own (adaptive).
Run: python benchmarks/demo_seeds.py [--seeds 0,1,2,3,4] [--lambda-schedule linear] [--out demo-seeds-output]
"""

from __future__ import annotations

import argparse
import csv
import json
import pathlib
import subprocess
import sys

from harmonization.metrics import summarize

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "demo_seeds.json"
ARMS = ("control", "harmonized")


def seed_result(folder: pathlib.Path) -> dict[str, dict[str, float]]:
    """Accuracy, human alignment, conflict accuracy and adversarial alignment of both arms of one run."""
    with open(folder / "attacks" / "summary.csv") as handle:
        attacks = {row["model"]: row for row in csv.DictReader(handle) if row["attack"] == "l2_pgd"}
    result = {}
    for arm in ARMS:
        evaluation = json.loads((folder / arm / "evaluation.json").read_text())
        result[arm] = {
            "accuracy": evaluation["evaluation"]["accuracy"],
            "human_alignment": evaluation["evaluation"]["spearman"]["mean"],
            "conflict_accuracy": evaluation["conflict"]["accuracy"],
            "adversarial_alignment": float(attacks[arm]["alignment_mean"]),
            "tolerance": float(attacks[arm]["l2_mean"]),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument(
        "--lambda-schedule",
        choices=("adaptive", "linear"),
        default="adaptive",
        help="the demo's lambda schedule (linear: the one-epoch ramp of the seed table in docs/clickme-mini.md)",
    )
    parser.add_argument("--epochs", type=int, default=12, help="the demo's epochs (12: its default)")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "demo-seeds-output")
    args = parser.parse_args()
    seeds = [int(seed) for seed in args.seeds.split(",")]
    runs = {}
    for seed in seeds:
        folder = args.out / f"{args.lambda_schedule}-{args.epochs}-epochs" / f"seed-{seed}"
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "scripts" / "demo.py"),
                "--out",
                str(folder),
                "--seed",
                str(seed),
                "--photos",
                "0",
                "--lambda-schedule",
                args.lambda_schedule,
                "--epochs",
                str(args.epochs),
            ],
            check=True,
        )
        runs[seed] = seed_result(folder)
    measures = list(runs[seeds[0]]["control"])
    gains = {m: [runs[s]["harmonized"][m] - runs[s]["control"][m] for s in seeds] for m in measures}
    report = {
        "seeds": seeds,
        "lambda_schedule": args.lambda_schedule,
        "epochs": args.epochs,
        "runs": runs,
        "gain": {m: {**summarize(values), "positive": sum(v > 0 for v in values)} for m, values in gains.items()},
    }
    print(f"\n{'seed':>4s} " + " ".join(f"{m:>22s}" for m in measures) + "   (harmonized - control)")
    for i, seed in enumerate(seeds):
        print(f"{seed:>4d} " + " ".join(f"{gains[m][i]:>+22.3f}" for m in measures))
    print(" all " + " ".join(f"{report['gain'][m]['mean']:>+15.3f} ± {report['gain'][m]['sem']:.3f}" for m in measures))
    print("  >0 " + " ".join(f"{report['gain'][m]['positive']:>18d} of {len(seeds)}" for m in measures))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
