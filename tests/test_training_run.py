"""``harmonization.training.run``: one call trains, saves, evaluates and summarises; its run folder
resumes after a kill, a full disk or a truncated backup, and refuses a stale or finished run."""

import csv
import errno
import importlib
import json
import logging
import os

import pytest

import builders
import keras

from harmonization.cli import main
from harmonization.files import OutputError
from harmonization.training import ConfigError, StaleRunError, TrainConfig, TrainingCollapsed, run
from harmonization.training.formats import RUN_FORMAT
from harmonization.training.resume import Backup

training_run = importlib.import_module("harmonization.training.run")  # the module, not the function


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return builders.write_random_label_shards(tmp_path_factory.mktemp("data"), n=64)


def config(shards, out, **changes) -> TrainConfig:
    """A tiny plain run (lambda 0: no saliency pass) of 2 steps per epoch at 32 px."""
    settings = dict(
        model="small_cnn_plain",
        train=shards,
        val=shards,
        out=str(out),
        epochs=3,
        image_size=32,
        num_classes=4,
        batch_size=32,
        lambda_harmonization=0.0,
        optimizer="adam",
        lr=1e-3,
        warmup_epochs=0,
        lambda_ramp_epochs=0,
        min_crop_area=1.0,
        val_split="test",
        alignment_batches=1,
        verbose=0,
    )
    return TrainConfig(**{**settings, **changes})


def history(out) -> list[dict]:
    """history.csv parsed strictly: one header, every row as long as the header."""
    with open(out / "history.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows and rows[0][0] == "epoch" and all(len(row) == len(rows[0]) for row in rows)
    assert sum(row[0] == "epoch" for row in rows) == 1
    return [dict(zip(rows[0], row)) for row in rows[1:]]


class Killed(Exception):
    """Stands for a kill of the process."""


def kill_after_epoch(monkeypatch, index: int) -> None:
    """Make the run die (as a kill would) right after the backup of epoch ``index``."""
    save = Backup.on_epoch_end

    def dying(self, epoch, logs=None):
        save(self, epoch, logs)
        if epoch == index:
            raise Killed

    monkeypatch.setattr(Backup, "on_epoch_end", dying)


def disk_full_on_call(monkeypatch, owner, name: str, call: int) -> None:
    """Make ``owner.name`` raise OSError(ENOSPC) on its ``call``-th call (1-based)."""
    original, calls = getattr(owner, name), []

    def filling(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, filling)


def test_run_trains_saves_evaluates_and_refuses_to_retrain(shards, tmp_path):
    out = tmp_path / "run"
    result = run(config(shards, out))
    assert result.status == "trained" and result.resumed_epochs == 0
    assert sorted(p.name for p in out.iterdir()) == ["history.csv", "model.keras", "run.json", "summary.json"]
    assert [row["epoch"] for row in history(out)] == ["0", "1", "2"]
    assert [row["epoch"] for row in result.history] == [0, 1, 2]
    model = keras.saving.load_model(result.model_path)
    assert model.input_shape == (None, 32, 32, 3) and model.output_shape == (None, 4)
    summary = json.loads(result.summary_path.read_text())
    assert summary["settings"]["lr"] == 1e-3 and summary["settings"]["lambda_schedule"] == "adaptive"
    assert summary["validation"]["count"] == 64 and summary["validation"] == result.validation
    assert isinstance(result.validation["near_chance"], bool)
    assert json.loads((out / "run.json").read_text())["status"] == "complete"

    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = run(config(shards, out))  # the same settings: complete, nothing is trained or written
    assert again.status == "complete" and again.summary == summary
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before

    with pytest.raises(StaleRunError) as refused:
        run(config(shards, out, lr=1e-2, epochs=4))
    assert refused.value.changed == {"epochs": (3, 4), "lr": (1e-3, 1e-2)}
    message = str(refused.value)
    assert "\n" not in message and "lr 0.001 (now 0.01)" in message and "fresh=True starts over" in message
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before  # nothing touched

    fresh = run(config(shards, out, lr=1e-2, epochs=1, fresh=True))
    assert fresh.status == "trained" and [row["epoch"] for row in history(out)] == ["0"]


def test_a_killed_run_resumes_from_its_newest_readable_backup(shards, tmp_path, monkeypatch, caplog):
    out = tmp_path / "run"
    kill_after_epoch(monkeypatch, 1)
    with pytest.raises(Killed):
        run(config(shards, out))
    monkeypatch.undo()
    assert [row["epoch"] for row in history(out)] == ["0", "1"]
    backups = sorted(p.name for p in (out / "backup").iterdir())
    assert backups == ["epoch-0001.weights.h5", "epoch-0002.weights.h5"]
    newest = out / "backup" / "epoch-0002.weights.h5"
    newest.write_bytes(newest.read_bytes()[:1000])  # truncated, as by a disk that filled up

    with caplog.at_level(logging.WARNING, logger="harmonization.training.resume"):
        result = run(config(shards, out))
    assert result.status == "trained" and result.resumed_epochs == 1
    warnings = [r.getMessage() for r in caplog.records if "unreadable backup" in r.getMessage()]
    assert len(warnings) == 1 and str(newest) in warnings[0]
    assert [row["epoch"] for row in history(out)] == ["0", "1", "2"]  # epoch 1 rerun, not duplicated
    assert not (out / "backup").exists()


def test_a_full_disk_keeps_earlier_files_and_the_same_call_then_finishes(shards, tmp_path, monkeypatch):
    out = tmp_path / "run"
    disk_full_on_call(monkeypatch, keras.Model, "save_weights", 2)  # the backup after epoch 1
    with pytest.raises(OutputError) as full:
        run(config(shards, out))
    assert full.value.strerror == f"cannot write {out / 'backup' / 'epoch-0002.weights.h5'}: No space left on device"
    monkeypatch.undo()
    assert [p.name for p in (out / "backup").iterdir()] == ["epoch-0001.weights.h5"]  # no partial file
    assert [row["epoch"] for row in history(out)] == ["0", "1"]

    disk_full_on_call(monkeypatch, csv.DictWriter, "writerows", 2)  # history.csv after epoch 2
    with pytest.raises(OutputError, match="history.csv: No space left on device"):
        run(config(shards, out))
    monkeypatch.undo()
    assert [row["epoch"] for row in history(out)] == ["0", "1"]  # the previous version, whole
    assert not list(out.glob(".tmp-*")) and not list((out / "backup").glob(".tmp-*"))

    write_json = training_run.write_json

    def disk_fills_at_the_summary(path, data):
        if path == out / "summary.json":
            disk_full_on_call(monkeypatch, os, "fsync", 1)
        write_json(path, data)

    monkeypatch.setattr(training_run, "write_json", disk_fills_at_the_summary)
    with pytest.raises(OutputError, match="summary.json: No space left on device"):
        run(config(shards, out))  # trained and evaluated, but the summary cannot be written
    monkeypatch.undo()
    assert json.loads((out / "run.json").read_text())["status"] == "running"
    assert (out / "model.keras").exists() and not (out / "summary.json").exists()
    assert [row["epoch"] for row in history(out)] == ["0", "1", "2"]

    result = run(config(shards, out))  # nothing left to train: saves, evaluates, summarises
    assert result.status == "trained" and result.resumed_epochs == 3
    assert [row["epoch"] for row in history(out)] == ["0", "1", "2"]
    assert json.loads((out / "summary.json").read_text())["validation"] == result.validation


def test_a_harmonized_run_held_at_chance_is_stopped_and_keeps_its_history(shards, tmp_path, capsys):
    out = tmp_path / "run"
    argv = [
        "train",
        "--model",
        "small_cnn",
        "--train",
        shards,
        "--val",
        shards,
        "--out",
        str(out),
        "--epochs",
        "6",
        "--image-size",
        "32",
        "--num-classes",
        "4",
        "--batch-size",
        "32",
        "--lambda",
        "0.5",
        "--lambda-schedule",
        "linear",
        "--optimizer",
        "adam",
        "--lr",
        "1e-3",
        "--warmup-epochs",
        "0",
        "--lambda-ramp-epochs",
        "0",
        "--min-crop-area",
        "1",
        "--val-split",
        "test",
        "--alignment-batches",
        "1",
        "--verbose",
        "0",
        "--collapse-patience",
        "2",
    ]
    with pytest.raises(SystemExit) as stopped:  # the labels are random: nothing to learn
        main(argv)
    assert stopped.value.code == 3
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"harmonize: stopped: {out}: training stopped after epoch 2")
    assert "--lambda-schedule adaptive" in lines[0] and "--no-collapse-guard continues the run" in lines[0]
    rows = history(out)
    assert [row["epoch"] for row in rows] == ["0", "1"] and all(float(row["accuracy"]) < 0.4 for row in rows)
    assert sorted(p.name for p in (out / "backup").iterdir()) == ["epoch-0001.weights.h5", "epoch-0002.weights.h5"]
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "collapsed" and not (out / "model.keras").exists()

    same = config(
        shards,
        out,
        model="small_cnn",
        epochs=6,
        lambda_harmonization=0.5,
        lambda_schedule="linear",
        collapse_patience=2,
    )
    with pytest.raises(TrainingCollapsed, match="collapse_guard=False continues it"):
        run(same)  # the same settings through the library: the collapsed run is not trained again
    assert [row["epoch"] for row in history(out)] == ["0", "1"]


def test_a_slow_run_whose_gate_never_opened_is_not_stopped_and_says_so(shards, tmp_path, caplog):
    """Random labels and a tiny learning rate: the adaptive gate never opens, so the guard has
    nothing to judge; the run ends, saying it never left chance. The 4-class data with a 100-unit
    head: chance is 1/4 (with 1/100 the gate would have opened at once at 0.25)."""
    out = tmp_path / "run"
    argv = [
        "train",
        "--model",
        "small_cnn",
        "--train",
        shards,
        "--val",
        shards,
        "--out",
        str(out),
        "--epochs",
        "3",
        "--image-size",
        "32",
        "--num-classes",
        "100",
        "--batch-size",
        "32",
        "--lambda",
        "0.5",
        "--optimizer",
        "adam",
        "--lr",
        "1e-7",
        "--warmup-epochs",
        "0",
        "--lambda-ramp-epochs",
        "0",
        "--min-crop-area",
        "1",
        "--val-split",
        "test",
        "--alignment-batches",
        "1",
        "--verbose",
        "0",
        "--collapse-patience",
        "2",
    ]
    with caplog.at_level(logging.WARNING, logger="harmonization.training"):
        assert main(argv) == 0
    err = [record.getMessage() for record in caplog.records if record.name.startswith("harmonization.training")]
    assert all("\n" not in line for line in err)
    head = [line for line in err if "exceeds" in line]
    assert head == [
        "--num-classes 100 exceeds the 4 classes present in the training data: chance is "
        "taken as 1/4 (the head is wider than the data)"
    ]
    stuck = [line for line in err if "never left chance" in line]
    assert len(stuck) == 1 and "in 3 epochs" in stuck[0] and "below 0.400" in stuck[0]
    assert "slow learning, not a collapse" in stuck[0] and "--lr" in stuck[0] and "--min-crop-area 1" in stuck[0]
    rows = history(out)
    assert [row["epoch"] for row in rows] == ["0", "1", "2"] and all(float(row["lambda"]) == 0 for row in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["chance"]["data_classes"] == 4 and summary["chance"]["left_chance"] is False
    assert summary["chance"]["message"] == stuck[0]
    assert json.loads((out / "run.json").read_text())["status"] == "complete"


def test_a_single_class_training_set_is_refused(tmp_path):
    from harmonization.data import write_clickme

    arrays = builders.clickme_arrays(8, 32, 4, 0)
    write_clickme(
        [{"image": arrays["image"][i], "heatmap": arrays["heatmap"][i, ..., 0], "label": 2} for i in range(8)],
        tmp_path / "one",
        num_classes=4,
        prefix="one",
    )
    with pytest.raises(ConfigError, match=r"the training labels hold 1 class\(es\)"):
        run(config(str(tmp_path / "one" / "one-*"), tmp_path / "run"))


def test_a_folder_whose_run_cannot_be_identified_is_refused_in_one_line(shards, tmp_path):
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "history.csv").write_text("epoch,loss\n0,1.0\n")  # an older version's run: no run.json
    with pytest.raises(ConfigError, match=r"holds history.csv of a run without its settings .*fresh=True starts over$"):
        run(config(shards, legacy))
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "run.json").write_text("{not json")
    with pytest.raises(ConfigError) as refused:
        run(config(shards, garbage))
    assert str(refused.value).startswith(f"{garbage / 'run.json'}: not a readable run record (")
    assert "\n" not in str(refused.value)
    assert (legacy / "history.csv").read_text() == "epoch,loss\n0,1.0\n"  # nothing touched
    assert sorted(p.name for p in garbage.iterdir()) == ["run.json"]


def test_the_same_seed_repeats_a_harmonized_run_exactly_and_another_seed_does_not(shards, tmp_path):
    """Training batches come in a fixed order with fixed crops per seed (``deterministic_data``),
    so a rerun gives the same history, not one within noise of it."""
    harmonized = dict(epochs=2, lambda_harmonization=0.5, min_crop_area=0.5, collapse_guard=False)
    histories = [
        run(config(shards, tmp_path / name, seed=seed, **harmonized)).history
        for name, seed in (("a", 1), ("b", 1), ("c", 2))
    ]
    assert histories[0] == histories[1]
    assert histories[0][-1]["loss"] != histories[2][-1]["loss"]


def test_run_json_holds_its_format_and_a_record_of_another_format_is_refused(shards, tmp_path):
    out = tmp_path / "old"
    run(config(shards, out, epochs=1))
    record = json.loads((out / "run.json").read_text())
    assert record["format"] == RUN_FORMAT == 1
    unnumbered = {key: value for key, value in record.items() if key != "format"}
    (out / "run.json").write_text(json.dumps(unnumbered))  # as 0.1.0 wrote it: format 1, no number
    assert run(config(shards, out, epochs=1)).status == "complete"
    with pytest.raises(StaleRunError, match="saliency"):
        run(config(shards, out, epochs=1, saliency="absolute"))
    del unnumbered["settings"]["saliency"]  # as a version older than 0.1.0 wrote it
    older = {key: value for key, value in unnumbered.items() if key != "data"}
    cases = {
        "older": (older, "no format number and no data, settings.saliency: written before harmonization 0.1.0"),
        "newer": (
            {**record, "format": 2},
            "format 2, but this version of harmonization reads format 1 (a newer version wrote it?)",
        ),
    }
    for written, message in cases.values():
        (out / "run.json").write_text(json.dumps(written))
        files = {path: path.read_bytes() for path in sorted(out.rglob("*")) if path.is_file()}
        with pytest.raises(ConfigError) as refused:
            run(config(shards, out, epochs=1))
        assert str(refused.value) == f"{out / 'run.json'}: {message}; fresh=True starts over"
        assert files == {
            path: path.read_bytes() for path in sorted(out.rglob("*")) if path.is_file()
        }  # nothing written or lost
