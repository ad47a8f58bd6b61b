"""``adv-align attack`` on a published-format harmonized file and a timm control in one sweep.

The file is written by the reference constructor (tf.keras 2 applications' VGG16, a 32 px stand-in
with random weights, ImageNet's 1000 classes) in the published full-model format; it is attacked
through the ``published:vgg16:PATH`` spec under Keras's torch backend, in a subprocess (the backend
is fixed per process), beside timm's ``test_vit`` with random weights as the control.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import textwrap

SWEEP = textwrap.dedent("""
    import sys
    import numpy as np, torch
    from attacks_torch.cli import main
    from attacks_torch.models import load_model
    from harmonization.clickme import encode_example, write_records

    path, out = sys.argv[1], sys.argv[2]
    spec = f"published:vgg16:{path}"
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 60, (4, 32, 32, 3)).astype(np.float32)
    heatmaps = np.zeros((4, 32, 32, 1), np.float32)
    images[:, 8:20, 8:20] += 150
    heatmaps[:, 8:20, 8:20] = 1.0
    model = load_model(spec)
    with torch.no_grad():  # the file's own predictions as labels, so every image is attacked
        labels = model(torch.from_numpy(images / 255).permute(0, 3, 1, 2)).argmax(1).tolist()
    write_records(f"{out}/stim-00000-of-00001.tfrecords", [
        encode_example({"image": images[i].tobytes(), "heatmap": heatmaps[i].tobytes(), "label": labels[i]})
        for i in range(4)])
    sys.exit(main(["attack", "--models", f"harmonized={spec},control=test_vit",
                   "--weights", "random", "--num-classes", "1000", "--stimuli", f"{out}/stim-*",
                   "--out", f"{out}/sweep", "--batch-size", "4", "--hi", "10", "--tol", "0.05",
                   "--threads", "1", "--no-progress"]))
""")


def test_a_published_file_and_its_control_are_attacked_in_one_sweep(published_files, tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", SWEEP, str(published_files / "vgg16.h5"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=900,
        env={"KERAS_BACKEND": "torch", "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "sweep" / "summary.csv", newline="") as handle:
        rows = {row["model"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {"harmonized", "control"}
    harmonized = rows["harmonized"]
    assert harmonized["status"] == "done" and int(harmonized["n_attacked"]) == 4
    assert int(harmonized["n_fooled"]) >= 1 and float(harmonized["l2_mean"]) > 0
    assert rows["control"]["status"] == "done" and int(rows["control"]["n_images"]) == 4
    summary = json.loads((tmp_path / "sweep" / "harmonized").glob("*/summary.json").__next__().read_text())
    assert summary["num_classes"] == 1000
