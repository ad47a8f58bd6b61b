"""``harmonize train`` and ``harmonize evaluate`` on the torch and JAX backends never load
TensorFlow: they read ClickMe through ``harmonization.inputs``, and still train, resume and
evaluate. Each command runs in a fresh interpreter that reports, last, whether ``tensorflow`` is in
``sys.modules``. The shards are written here, in the test process (by the TensorFlow writer)."""

from __future__ import annotations

import csv
import json
import signal

import pytest
from builders import run_python

HARMONIZE = """
    import os, signal, sys
    kill_epoch, argv = int(sys.argv[1]), sys.argv[2:]
    if kill_epoch >= 0:  # SIGKILL at the second batch of that epoch (KERAS_BACKEND set: keras loads here)
        from harmonization.training.resume import Backup

        def begin(self, epoch, logs=None):
            self.epoch = epoch

        def batch_end(self, batch, logs=None):
            if self.epoch == kill_epoch and batch == 1:
                os.kill(os.getpid(), signal.SIGKILL)

        Backup.on_epoch_begin, Backup.on_train_batch_end = begin, batch_end
    from harmonization.cli import main
    code = main(argv)
    print("tensorflow loaded:", "tensorflow" in sys.modules)
    sys.exit(code)
"""


@pytest.fixture(scope="module")
def mini(tmp_path_factory) -> str:
    from harmonization.data.mini import clickme_mini

    folder = str(tmp_path_factory.mktemp("no_tf") / "mini")
    clickme_mini(folder, seed=0, train_size=64, val_size=32, conflict_size=8, stimuli_per_class=2)
    return folder


def harmonize(argv: list[str], kill_epoch: int = -1, backend: str | None = None):
    return run_python(HARMONIZE, args=(str(kill_epoch), *argv), env={"KERAS_BACKEND": backend} if backend else None)


def train_argv(mini: str, out, backend: str, model: str = "small_cnn_plain", epochs: int = 2) -> list[str]:
    return [
        "train",
        "--backend",
        backend,
        "--model",
        model,
        "--train",
        f"{mini}/train-*",
        "--val",
        f"{mini}/val-*",
        "--val-split",
        "test",
        "--conflict",
        f"{mini}/conflict-*",
        "--epochs",
        str(epochs),
        "--out",
        str(out),
        "--image-size",
        "32",
        "--num-classes",
        "4",
        "--batch-size",
        "16",
        "--optimizer",
        "adam",
        "--lr",
        "1e-3",
        "--lambda",
        "1",
        "--lambda-schedule",
        "linear",
        "--lambda-ramp-epochs",
        "0",
        "--warmup-epochs",
        "0",
        "--min-crop-area",
        "1",
        "--no-collapse-guard",
        "--seed",
        "0",
        "--verbose",
        "0",
    ]


def assert_without_tensorflow(result) -> None:
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "tensorflow loaded: False", result.stdout[-2000:]


def history(out) -> list[dict]:
    with open(out / "history.csv") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


@pytest.fixture(scope="module")
def torch_run(mini, tmp_path_factory):
    out = tmp_path_factory.mktemp("torch_run") / "run"
    result = harmonize(train_argv(mini, out, "torch"))
    return out, result


def test_a_torch_run_trains_and_evaluates_without_tensorflow(torch_run, mini):
    out, result = torch_run
    assert_without_tensorflow(result)
    assert sorted(p.name for p in out.iterdir()) == ["history.csv", "model.keras", "run.json", "summary.json"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["backend"] == "torch"
    assert summary["validation"]["count"] == 32 and summary["conflict"]["count"] == 8
    rows = history(out)
    assert [row["epoch"] for row in rows] == [0, 1] and all(row["lambda"] == 1.0 for row in rows)
    assert {"val_accuracy", "val_alignment", "val_harmonization"} <= set(rows[0])
    # the saved model, evaluated on torch in a new process, gives what the run's final evaluation gave
    evaluated = harmonize(
        [
            "evaluate",
            "--weights",
            str(out / "model.keras"),
            "--data",
            f"{mini}/val-*",
            "--split",
            "test",
            "--batch-size",
            "16",
        ],
        backend="torch",
    )
    assert_without_tensorflow(evaluated)
    assert "32 images, 32 with a human map" in evaluated.stdout
    assert f"{summary['validation']['accuracy']:.4f}" in evaluated.stdout


def test_a_torch_run_killed_and_rerun_ends_complete_as_the_uninterrupted_run(torch_run, mini, tmp_path):
    straight, _ = torch_run
    out = tmp_path / "run"
    killed = harmonize(train_argv(mini, out, "torch"), kill_epoch=1, backend="torch")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not (out / "summary.json").exists() and (out / "backup" / "epoch-0001.weights.h5").exists()
    resumed = harmonize(train_argv(mini, out, "torch"))
    assert_without_tensorflow(resumed)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed_epochs"] == 1 and json.loads((out / "run.json").read_text())["status"] == "complete"
    # the resumed epoch reads the batches the uninterrupted run read in it (from batch 4 on, not reread)
    for row, expected in zip(history(out), history(straight), strict=True):
        assert row.keys() == expected.keys()
        for key in row:
            assert row[key] == pytest.approx(expected[key], rel=1e-4, abs=1e-5), key
    again = harmonize(train_argv(mini, out, "torch"))
    assert_without_tensorflow(again)
    assert "the run is already complete" in again.stdout


@pytest.mark.parametrize("backend, model", [("torch", "timm:test_resnet"), ("jax", "small_cnn_plain")])
def test_timm_on_torch_and_a_jax_run_train_without_tensorflow(mini, tmp_path, backend, model):
    out = tmp_path / "run"
    result = harmonize(train_argv(mini, out, backend, model, epochs=1))
    assert_without_tensorflow(result)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["backend"] == backend and summary["validation"]["count"] == 32
    assert (out / ("model.safetensors" if model.startswith("timm:") else "model.keras")).is_file()
    assert [row["epoch"] for row in history(out)] == [0]


def test_a_torch_run_mixing_imagenet_shards_with_mixup_trains_without_tensorflow(mini, tmp_path):
    import numpy as np

    from harmonization.clickme import write_imagenet

    rng = np.random.default_rng(0)
    write_imagenet(
        [rng.integers(0, 255, (36, 36, 3), dtype=np.uint8) for _ in range(48)],
        [i % 4 for i in range(48)],
        tmp_path / "imagenet",
    )
    argv = train_argv(mini, tmp_path / "run", "torch", epochs=1) + [
        "--mix-with",
        str(tmp_path / "imagenet" / "imagenet-*"),
        "--mixup",
        "0.2",
        "--min-crop-area",
        "0.5",
    ]
    refused = harmonize(argv)  # as on TensorFlow: a mixed epoch's length is unknown
    assert refused.returncode == 2 and "pass --steps-per-epoch" in refused.stderr.strip().splitlines()[-1]
    result = harmonize(argv + ["--steps-per-epoch", "3"])
    assert_without_tensorflow(result)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["settings"]["mixup"] == 0.2 and summary["validation"]["count"] == 32


SEEDED = """
    import json, sys
    import numpy as np
    import torch
    from harmonization.models import build_model
    from harmonization.tensorflow_free import seed_keras

    seed_keras(3)  # Python, numpy and torch, as keras.utils.set_random_seed seeds them
    drawn = [float(np.random.rand()), float(torch.rand(1))]
    np.random.seed(3)
    torch.manual_seed(3)
    out = {"seeded": drawn == [float(np.random.rand()), float(torch.rand(1))]}
    build_model("small_cnn_plain", 4, 32).save(sys.argv[1])  # Keras's saving asks for TensorFlow
    out["loaded_by_keras"] = "tensorflow" in sys.modules
    import tensorflow  # noqa: F401  (the process's own import still works)
    out["importable"] = "tensorflow" in sys.modules
    print(json.dumps(out))
"""


def test_seeding_and_saving_on_torch_leave_tensorflow_unloaded_yet_importable(tmp_path):
    result = run_python(SEEDED, env={"KERAS_BACKEND": "torch"}, args=(str(tmp_path / "m.keras"),))
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out == {"seeded": True, "loaded_by_keras": False, "importable": True}
    assert (tmp_path / "m.keras").is_file()
