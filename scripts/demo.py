"""`make demo`: the adversarial-alignment study in miniature, on ClickMe-mini, through the project's CLIs.

Stages (each one is skipped when its outputs exist, unless --fresh; a sweep when it finished every model):
  1. ClickMe-mini shards (train, val, conflict, stimuli)        `harmonize mini`
  2. train a control (lambda 0) and a harmonized small CNN       `harmonize train`  (one process each)
  3. evaluate both: accuracy, human alignment, conflict accuracy  `harmonize evaluate`
  4. attack both with the paper's protocol, and the pretrained    `adv-align attack`
     efficientnet-lite0 on photos bundled with scikit-image etc.
  5. figures, statistics and the final table                      `adv-align report`
The attack sweep also measures every model's human alignment on the stimuli with maps (the
evaluation saliency of `harmonize evaluate`, in PyTorch): the table's "human alignment, sweep" column.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("demo-output"), help="output folder")
    parser.add_argument("--fresh", action="store_true", help="delete the output folder first")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--n-val", type=int, default=400)
    parser.add_argument("--stimuli-per-class", type=int, default=25)
    parser.add_argument("--lam", type=float, default=0.5, help="harmonization weight of the harmonized model")
    parser.add_argument("--lr", type=float, default=1e-3, help="base learning rate (Adam)")
    parser.add_argument(
        "--lambda-schedule",
        choices=("adaptive", "linear"),
        default="adaptive",
        help="harmonize train's lambda schedule (linear: the earlier one-epoch ramp)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--photos", type=int, default=7, help="bundled photos attacked on efficientnet-lite0 (0: skip)")
    parser.add_argument(
        "--panels-to",
        type=Path,
        default=None,
        help="also copy the report's perturbation panels there (the README's figure: --panels-to docs/demo-panels.png)",
    )
    return parser.parse_args(argv)


def stage(number: int, title: str) -> None:
    print(f"\n[{time.strftime('%H:%M:%S')}] stage {number}/5: {title}", flush=True)


def run(*command: str | Path, capture: bool = False) -> str:
    """Run one project CLI, showing its progress (or capturing its output); stop the demo if it fails."""
    command = [str(part) for part in command]
    print("  $", " ".join(Path(command[0]).name if i == 0 else c for i, c in enumerate(command)), flush=True)
    process = subprocess.run(command, stdout=subprocess.PIPE if capture else None, text=True)
    if process.returncode != 0:
        sys.exit(f"demo: `{' '.join(command)}` failed with exit code {process.returncode}")
    return process.stdout or ""


def make_data(args: argparse.Namespace) -> dict:
    manifest = args.out / "data" / "splits.json"
    if not manifest.exists():
        out = run(
            BIN / "harmonize",
            "mini",
            "--out",
            args.out / "data",
            "--seed",
            args.seed,
            "--train-size",
            args.n_train,
            "--val-size",
            args.n_val,
            "--conflict-size",
            args.n_val,
            "--stimuli-per-class",
            args.stimuli_per_class,
            capture=True,
        )
        splits = json.loads(out[out.index("{") :])
        manifest.write_text(json.dumps(splits, indent=2))
    splits = json.loads(manifest.read_text())
    print(f"  ClickMe-mini: {splits['num_classes']} classes, {splits['image_size']} px -> {args.out / 'data'}")
    return splits


def train(args: argparse.Namespace, splits: dict, name: str, lam: float) -> Path:
    out = args.out / name
    if not (out / "model.keras").exists() or not (out / "summary.json").exists():
        run(
            BIN / "harmonize",
            "train",
            "--model",
            "small_cnn_plain",
            "--train",
            splits["train"],
            "--val",
            splits["val"],
            "--val-split",
            "test",
            "--epochs",
            args.epochs,
            "--out",
            out,
            "--lambda",
            lam,
            "--image-size",
            splits["image_size"],
            "--num-classes",
            splits["num_classes"],
            "--seed",
            args.seed,
            "--optimizer",
            "adam",
            "--lr",
            args.lr,
            "--warmup-epochs",
            1,
            "--lambda-ramp-epochs",
            1,
            "--lambda-schedule",
            args.lambda_schedule,
            "--min-crop-area",
            1.0,
            "--alignment-batches",
            2,
        )
    return out / "model.keras"


def evaluate(args: argparse.Namespace, splits: dict, name: str, weights: Path) -> dict:
    out = args.out / name / "evaluation.json"
    if not out.exists():
        run(
            BIN / "harmonize",
            "evaluate",
            "--weights",
            weights,
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


def write_photo_stimuli(args: argparse.Namespace) -> Path:
    """The first ``--photos`` bundled photos as a stimulus shard (raw float32 layout, no human maps)."""
    folder = args.out / "photos"
    if not list(folder.glob("*.tfrecords")):
        import numpy as np

        from attacks_torch.photos import bundled_photos
        from harmonization.clickme import write_clickme

        images, labels, _ = bundled_photos()
        pixels = (images[: args.photos].permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
        examples = [
            {"image": p, "heatmap": np.zeros(p.shape[:2], np.float32), "label": int(label)}
            for p, label in zip(pixels, labels[: args.photos].tolist())
        ]
        write_clickme(examples, folder, layout="stimulus", prefix="photos")
    return folder


def swept(out: Path, models: list[str]) -> bool:
    """Whether the sweep in ``out`` has finished every model in ``models`` (its summary.csv rows)."""
    import pandas as pd

    summary = out / "summary.csv"
    if not summary.exists():
        return False
    rows = pd.read_csv(summary)
    done = rows[(rows["attack"] == "l2_pgd") & (rows["status"] == "done")]["model"]
    return set(models) <= set(done)


def sweep(out: Path, models: list[str], specs: str, stimuli: str | Path) -> bool:
    """Attack ``specs`` unless the sweep in ``out`` finished every one of ``models``; whether it ran."""
    if swept(out, models):
        return False
    run(BIN / "adv-align", "attack", "--models", specs, "--stimuli", stimuli, "--out", out, "--attack", "l2_pgd")
    return True


def attack(args: argparse.Namespace, splits: dict, models: dict[str, Path]) -> bool:
    """The ClickMe-mini sweep and, on the bundled photos, efficientnet-lite0's; whether any ran."""
    specs = ",".join(f"{name}={path}" for name, path in models.items())
    ran = sweep(args.out / "attacks", list(models), specs, splits["stimuli"])
    if args.photos:  # other stimuli (no human maps): their own folder, kept out of the ClickMe-mini figures
        lite0 = "efficientnet_lite0_imagenet"
        ran |= sweep(args.out / "attacks-photos", [lite0], lite0, write_photo_stimuli(args) / "*.tfrecords")
    return ran


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.fresh and args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()

    stage(1, "ClickMe-mini")
    splits = make_data(args)
    stage(2, "train the control (lambda 0) and the harmonized model")
    models = {"control": train(args, splits, "control", 0.0), "harmonized": train(args, splits, "harmonized", args.lam)}
    stage(3, "evaluate human alignment and accuracy")
    evaluations = {name: evaluate(args, splits, name, path) for name, path in models.items()}
    stage(4, "attack: minimal L2 PGD (paper protocol)")
    attacked = attack(args, splits, models)
    stage(5, "report")
    attacks, report = args.out / "attacks", args.out / "report"
    if attacked or not (report / "report.md").exists():
        run(BIN / "adv-align", "report", attacks, "--out", report, "--pairs", "control=harmonized")
    print_table(evaluations, attacks)
    if args.panels_to is not None:
        shutil.copyfile(args.out / "report" / "l2_pgd_panels.png", args.panels_to)
        print(f"copied the perturbation panels to {args.panels_to}")
    print(f"\ndemo finished in {time.time() - started:.0f} s; report: {args.out / 'report' / 'report.md'}")


def print_table(evaluations: dict, attacks: Path) -> None:
    """One row per model: accuracy, human alignment and its guards, tolerance, adversarial alignment."""
    import pandas as pd

    folders = [attacks, attacks.parent / "attacks-photos"]
    summary = pd.concat([pd.read_csv(f / "summary.csv") for f in folders if (f / "summary.csv").exists()])
    summary = summary[summary["attack"] == "l2_pgd"].set_index("model")

    def cell(stats: dict | None) -> str:
        return "n/a" if not stats or pd.isna(stats.get("mean")) else f"{stats['mean']:.3f} ± {stats['sem']:.3f}"

    rows = []
    for name in summary.index:
        attack_row = summary.loc[name]
        evaluation = evaluations.get(name, {}).get("evaluation", {})
        conflict = evaluations.get(name, {}).get("conflict", {})
        rows.append(
            {
                "model": name,
                "accuracy": f"{evaluation.get('accuracy', attack_row['accuracy']):.3f}",
                "human alignment (rho)": cell(evaluation.get("spearman")),
                "log-prob alignment": cell(evaluation.get("spearman_log_prob")),
                "human alignment, sweep (rho)": cell(
                    {"mean": attack_row.get("human_alignment_mean"), "sem": attack_row.get("human_alignment_sem")}
                ),
                "conflict accuracy": f"{conflict['accuracy']:.3f}" if conflict else "n/a",
                "tolerance (L2)": cell({"mean": attack_row["l2_mean"], "sem": attack_row["l2_sem"]}),
                "adversarial alignment": cell(
                    {"mean": attack_row["alignment_mean"], "sem": attack_row["alignment_sem"]}
                ),
            }
        )
    table = pd.DataFrame(rows)
    print("\n" + table.to_string(index=False))
    table.to_csv(attacks.parent / "demo-table.csv", index=False)


if __name__ == "__main__":
    main()
