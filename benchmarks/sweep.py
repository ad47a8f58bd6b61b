"""The sweep end to end on ClickMe-mini stimuli: images per second, and the share of time outside the attack.

Two small timm models (random init, 4 classes). So that every image is attacked, as an accurate
model's would be, each model gets the ClickMe-mini stimuli relabelled with its own clean
predictions (same images and human maps, stimulus layout). Each model is one ``run_sweep`` call
into a fresh folder, timed from the call to its return: reading the stimuli, loading the model,
the attack (``find_minimal``), the measures, the batch files, the merge and the summaries.
"Outside the attack" is that wall time minus the time inside ``find_minimal``; target: under 10 %.
Prints one line per model and a total, and writes benchmarks/results/sweep.json.
Run: python benchmarks/sweep.py [--per-class 25] [--threads 2] [--batch-size 16] [--device cuda]
[--stimuli GLOB] (GLOB: ClickMe-mini stimuli made beforehand, e.g. on a machine without TensorFlow)
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import textwrap
import time

import torch

from attacks_torch.models import load_model
from attacks_torch.stimuli import load_stimuli
from attacks_torch.sweep import ModelSpec, SweepConfig, SweepFolder, run_sweep
from harmonization.clickme import encode_example, write_records
from harmonization.files import write_text

RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "sweep.json"
MODELS = ("test_convnext", "test_vit")
TARGET_OUTSIDE = 0.10
MINI = textwrap.dedent("""
    import sys
    from harmonization.data import clickme_mini
    print(clickme_mini(sys.argv[1], train_size=8, val_size=4, conflict_size=4,
                       stimuli_per_class=int(sys.argv[2]))["stimuli"])
""")


def relabelled_stimuli(stimuli_glob: str, name: str, workdir: pathlib.Path) -> tuple[str, str]:
    """A random-init checkpoint of ``name`` and the stimuli relabelled with its predictions."""
    model = load_model(name, weights="random", num_classes=4, seed=0)
    checkpoint = workdir / f"{name}.pth"
    torch.save(model.network.state_dict(), checkpoint)
    stimuli = load_stimuli(stimuli_glob)
    with torch.no_grad():
        labels = model(model.resize_images(stimuli.images)).argmax(1).tolist()
    images = (stimuli.images * 255).permute(0, 2, 3, 1).numpy()
    path = workdir / f"stimuli-{name}.tfrecords"
    write_records(
        path,
        [
            encode_example(
                {"image": images[i].tobytes(), "heatmap": stimuli.heatmaps[i].numpy().tobytes(), "label": labels[i]}
            )
            for i in range(len(stimuli))
        ],
    )
    return str(checkpoint), str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--per-class",
        type=int,
        default=25,
        help="ClickMe-mini stimuli per class (4 classes; 25 is the demo's stimulus set)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--stimuli", default=None, help="existing ClickMe-mini stimuli glob (default: generate)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="sweep-bench-"))
    if args.stimuli is None:
        made = subprocess.run(
            [sys.executable, "-c", MINI, str(workdir / "mini"), str(args.per_class)],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        )
        stimuli_glob = made.stdout.strip().splitlines()[-1]
    else:
        stimuli_glob = args.stimuli
    rows = []
    for name in MODELS:
        checkpoint, stimuli = relabelled_stimuli(stimuli_glob, name, workdir)
        config = SweepConfig(
            stimuli=stimuli, batch_size=args.batch_size, num_classes=4, device=args.device, progress=False
        )
        start = time.perf_counter()
        (outcome,) = run_sweep([ModelSpec(name, name, checkpoint)], config, workdir / "out" / name)
        wall = time.perf_counter() - start
        summary = SweepFolder(workdir / "out" / name).model(name, "l2_pgd").read_summary()
        attack = outcome.timing["attack_s"]
        rows.append(
            {
                "model": name,
                "status": outcome.status,
                "images": summary["n_images"],
                "attacked": summary["n_attacked"],
                "fooled": summary["n_fooled"],
                "wall_s": wall,
                "attack_s": attack,
                "outside_s": wall - attack,
                "outside_share": (wall - attack) / wall,
                "images_per_s": summary["n_images"] / wall,
                "attack_only_images_per_s": summary["n_images"] / attack,
            }
        )
        r = rows[-1]
        print(
            f"sweep {name}: {r['images']} images ({r['attacked']} attacked, {r['fooled']} fooled) | end to end "
            f"{r['images_per_s']:.2f} img/s | attack only {r['attack_only_images_per_s']:.2f} img/s | ratio "
            f"{r['images_per_s'] / r['attack_only_images_per_s']:.3f} | outside the attack "
            f"{100 * r['outside_share']:.1f} % ({r['outside_s']:.2f} s of {r['wall_s']:.1f} s)"
        )
    images = sum(r["images"] for r in rows)
    wall = sum(r["wall_s"] for r in rows)
    attack = sum(r["attack_s"] for r in rows)
    share = (wall - attack) / wall
    total = {
        "images": images,
        "wall_s": wall,
        "attack_s": attack,
        "images_per_s": images / wall,
        "attack_only_images_per_s": images / attack,
        "outside_share": share,
        "target_outside_share": TARGET_OUTSIDE,
        "meets_target": share < TARGET_OUTSIDE,
        "threads": args.threads,
        "batch_size": args.batch_size,
        "device": args.device,
        "cpu_count": os.cpu_count(),
    }
    where = torch.cuda.get_device_name() if args.device == "cuda" else f"{os.cpu_count()} CPU cores"
    print(
        f"sweep total, 2 models x {images // 2} ClickMe-mini stimuli on {where}, "
        f"{args.threads} threads: end to end {total['images_per_s']:.2f} img/s | attack only "
        f"{total['attack_only_images_per_s']:.2f} img/s | outside the attack {100 * share:.1f} % | "
        f"target < {100 * TARGET_OUTSIDE:.0f} %: {'met' if total['meets_target'] else 'MISSED'}"
    )
    results = RESULTS if args.device == "cpu" else RESULTS.with_name("sweep_cuda.json")
    write_text(results, json.dumps({"models": rows, "total": total}, indent=2) + "\n")


if __name__ == "__main__":
    main()
