"""Load time and forward+backward time of the published harmonized models, TF vs torch backend.

Random-weight files in each published format are written once by the reference constructors at
full size (tests/reference/write_published.py --full: 224 px, 1000 classes). Each backend then
runs in its own process (the Keras backend is fixed per process), both in this one run: for every
model, the seconds of ``load_published`` and the median seconds of one forward+backward pass to
the input pixels (batch 8, 224 px; the attack's inner step), after one warm-up pass.
Writes benchmarks/results/published_zoo.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "published_zoo.json"
NAMES = ("vit_b16", "vgg16", "resnet50v2", "efficientnetb0", "convnext_tiny", "maxvit_tiny", "levit128")

MEASURE = """
import json, statistics, sys, time
from pathlib import Path
import numpy as np
backend, folder, names, batch, repeats = sys.argv[1], Path(sys.argv[2]), sys.argv[3].split(","), int(sys.argv[4]), int(sys.argv[5])
if backend == "torch":
    import torch
    from attacks_torch.models.keras_loader import load_published
else:
    import harmonization, tensorflow as tf
    from harmonization.models import load_published
results = {}
for name in names:
    started = time.perf_counter()
    model = load_published(name, folder / f"{name}.h5")
    load = time.perf_counter() - started
    pixels = np.random.default_rng(0).uniform(0, 1, (batch, 224, 224, 3)).astype("float32")
    if backend == "torch":
        x = torch.from_numpy(pixels.transpose(0, 3, 1, 2).copy()).requires_grad_(True)
        def step():
            (grad,) = torch.autograd.grad(model(x)[:, 0].sum(), x)
            return float(grad.abs().sum())
    else:
        x = tf.constant(pixels * 255.0)
        def step():
            with tf.GradientTape() as tape:
                tape.watch(x)
                target = tf.reduce_sum(model(x, training=False)[:, 0])
            return float(tf.reduce_sum(tf.abs(tape.gradient(target, x))))
    step()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    results[name] = {"load_s": load, "forward_backward_s": statistics.median(times), "runs": times}
    print(backend, name, results[name], file=sys.stderr, flush=True)
print(json.dumps(results))
"""


def run(command: list[str], env: dict) -> str:
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **env}, cwd=ROOT)
    if result.returncode != 0:
        raise SystemExit(f"{command[1]} failed:\n{result.stderr[-3000:]}")
    return result.stdout.strip().splitlines()[-1]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(NAMES))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    names = args.models.split(",")
    quiet = {"TF_CPP_MIN_LOG_LEVEL": "3", "HF_HUB_OFFLINE": "1"}
    with tempfile.TemporaryDirectory() as folder:
        legacy = {
            **quiet,
            "TF_USE_LEGACY_KERAS": "1",
            "PYTHONPATH": os.pathsep.join([str(ROOT / ".reference-env"), str(ROOT / "tests" / "reference" / "shims")]),
        }
        written = json.loads(
            run(
                [sys.executable, str(ROOT / "tests" / "reference" / "write_published.py"), folder, *names, "--full"],
                legacy,
            )
        )
        measured = {
            backend: json.loads(
                run(
                    [
                        sys.executable,
                        "-c",
                        MEASURE,
                        backend,
                        folder,
                        ",".join(names),
                        str(args.batch),
                        str(args.repeats),
                    ],
                    {**quiet, "KERAS_BACKEND": backend},
                )
            )
            for backend in ("tensorflow", "torch")
        }
    rows = {
        name: {
            "file_bytes": written[name]["bytes"],
            "parameters": written[name]["parameters"],
            **{
                f"{backend}_{key}": measured[backend][name][key]
                for backend in measured
                for key in ("load_s", "forward_backward_s")
            },
            "torch_over_tensorflow_forward_backward": measured["torch"][name]["forward_backward_s"]
            / measured["tensorflow"][name]["forward_backward_s"],
        }
        for name in names
    }
    report = {
        "batch": args.batch,
        "image_size": 224,
        "repeats": args.repeats,
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
        "models": rows,
    }
    sys.path.insert(0, str(ROOT))
    from harmonization.files import write_json

    write_json(args.out, report)
    for name, row in rows.items():
        print(
            f"{name:15s} load TF {row['tensorflow_load_s']:6.1f} s  torch {row['torch_load_s']:6.1f} s | "
            f"fwd+bwd TF {row['tensorflow_forward_backward_s']:6.2f} s  torch {row['torch_forward_backward_s']:6.2f} s "
            f"(torch/TF {row['torch_over_tensorflow_forward_backward']:.2f})"
        )
    return report


if __name__ == "__main__":
    main()
