"""Issue #22, training resumes that verify: a run killed mid-epoch and resumed ends as the same run
uninterrupted; a rerun refuses data regenerated under the same names and calls a run complete only
while its model file is the one it wrote."""

import os
import shutil
import signal

import numpy as np
import pytest

import builders
import keras

from harmonization.cli import main

CHILD = """
import importlib, os, signal, sys
import harmonization
from harmonization.training import TrainConfig
runner = importlib.import_module("harmonization.training.run")
data, jobs = sys.argv[1], sys.argv[2:]  # jobs: OUT:KILL_AFTER, run in order

for job in jobs:
    out, kill_after = job.rsplit(":", 1)
    kill_after = int(kill_after)

    class KilledAfter(runner.HistoryWriter):  # the process kills itself after kill_after batches
        steps = 0
        def on_train_batch_end(self, batch, logs=None):
            KilledAfter.steps += 1
            if KilledAfter.steps == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)

    if kill_after:
        runner.HistoryWriter = KilledAfter
    runner.run(TrainConfig(model="small_cnn", train=data, val=data, out=out, epochs=2,
                           image_size=32, num_classes=4, batch_size=16, lambda_harmonization=0.5,
                           lr=0.01, seed=3, warmup_epochs=0, lambda_ramp_epochs=0,
                           lambda_schedule="linear", verbose=0, min_crop_area=0.5,
                           collapse_guard=False))
"""


def argv(data, out) -> list[str]:
    """The CLI form of CHILD's run."""
    return [
        "train",
        "--model",
        "small_cnn",
        "--train",
        data,
        "--val",
        data,
        "--out",
        str(out),
        "--epochs",
        "2",
        "--image-size",
        "32",
        "--num-classes",
        "4",
        "--batch-size",
        "16",
        "--lambda",
        "0.5",
        "--lr",
        "0.01",
        "--seed",
        "3",
        "--warmup-epochs",
        "0",
        "--lambda-ramp-epochs",
        "0",
        "--lambda-schedule",
        "linear",
        "--verbose",
        "0",
        "--min-crop-area",
        "0.5",
        "--no-collapse-guard",
        "--backend",
        "tensorflow",
    ]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One run uninterrupted, one killed in its second epoch (4 batches an epoch) then resumed.
    One interpreter runs the uninterrupted run and then the one it kills; a fresh one resumes."""
    root = tmp_path_factory.mktemp("resume")
    data = builders.write_random_label_shards(root / "data", n=64, seed=1)
    finished = {name: root / name for name in ("uninterrupted", "resumed")}
    killed = builders.run_python(CHILD, args=(data, f"{finished['uninterrupted']}:0", f"{finished['resumed']}:6"))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert (finished["uninterrupted"] / "model.keras").is_file()
    assert sorted(os.listdir(finished["resumed"])) == ["backup", "history.csv", "run.json"]
    assert (finished["resumed"] / "history.csv").read_text().count("\n") == 2  # epoch 0 only
    done = builders.run_python(CHILD, args=(data, f"{finished['resumed']}:0"))
    assert done.returncode == 0, done.stderr[-2000:]
    return data, finished


def test_a_run_killed_mid_epoch_and_resumed_ends_as_the_uninterrupted_run(runs):
    _, finished = runs
    history = {name: (path / "history.csv").read_bytes() for name, path in finished.items()}
    assert history["resumed"] == history["uninterrupted"]
    weights = {name: keras.saving.load_model(path / "model.keras").get_weights() for name, path in finished.items()}
    for a, b in zip(weights["uninterrupted"], weights["resumed"], strict=True):
        np.testing.assert_array_equal(a, b)


def one_line_exit(arguments, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(arguments)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return exit_info.value.code, lines[0]


def contents(folder) -> dict:
    return {path: path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_complete_only_with_its_model_file_and_never_on_other_data(runs, tmp_path, capsys):
    data, finished = runs
    run = tmp_path / "run"
    shutil.copytree(finished["uninterrupted"], run)
    assert main(argv(data, run)) == 0
    assert "the run is already complete" in capsys.readouterr().out
    model = run / "model.keras"
    saved = model.read_bytes()
    model.unlink()
    before = contents(run)
    code, line = one_line_exit(argv(data, run), capsys)
    assert code == 2 and line == (
        f"harmonize: error: {run}: the run is recorded complete but {model} is missing; --fresh trains it again"
    )
    assert contents(run) == before
    model.write_bytes(saved[:-1] + bytes([saved[-1] ^ 1]))
    before = contents(run)
    code, line = one_line_exit(argv(data, run), capsys)
    assert code == 2 and f"but {model} is not the file the run wrote" in line
    assert contents(run) == before
    model.write_bytes(saved)
    first = sorted(p for p in os.listdir(os.path.dirname(data)))[0]
    builders.write_random_label_shards(os.path.dirname(data), n=64, seed=2)  # same names, new content
    code, line = one_line_exit(argv(data, run), capsys)
    shard = os.path.join(os.path.dirname(data), first)
    assert code == 2 and line.startswith(
        f"harmonize: error: {run} holds a run trained on other data: --train: {shard} has other content"
    )
    assert line.endswith("; --fresh starts over") and contents(run) == {**before, model: saved}
