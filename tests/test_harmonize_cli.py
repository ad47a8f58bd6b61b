"""The `harmonize` console script on ClickMe-mini: mini, train, evaluate, and its error lines."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import tf_helpers  # noqa: F401  (loads harmonization before TensorFlow)
import keras

from harmonization.cli import main

MINI_SIZES = ["--train-size", "96", "--val-size", "48", "--conflict-size", "32",
              "--stimuli-per-class", "2"]


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    out = tmp_path_factory.mktemp("mini")
    assert main(["mini", "--out", str(out), "--seed", "3", *MINI_SIZES]) == 0
    return out


def test_mini_prints_the_split_globs(mini, capsys):
    assert main(["mini", "--out", str(mini), "--seed", "3", *MINI_SIZES]) == 0  # already there
    splits = json.loads(capsys.readouterr().out)
    assert {"train", "val", "conflict", "stimuli"} <= set(splits)
    assert splits["num_classes"] == 4 and splits["image_size"] == 32
    assert os.path.dirname(splits["train"]) == str(mini)


def test_mini_cue_agreement_sets_how_often_the_cue_names_the_label(tmp_path, capsys):
    assert main(["mini", "--out", str(tmp_path), "--seed", "1", *MINI_SIZES, "--cue-agreement", "1"]) == 0
    cues = np.load(json.loads(capsys.readouterr().out)["cues"])
    for split in ("train", "val", "stimuli"):
        np.testing.assert_array_equal(cues[f"{split}_cue"], cues[f"{split}_label"])
    assert (cues["conflict_cue"] != cues["conflict_label"]).any()  # the conflict split ignores it


@pytest.fixture(scope="module")
def trained(mini, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    argv = ["train", "--model", "small_cnn", "--train", str(mini / "train-*"),
            "--val", str(mini / "val-*"), "--epochs", "2", "--out", str(out), "--image-size", "32",
            "--num-classes", "4", "--batch-size", "32", "--lambda", "0.5", "--seed", "1",
            "--min-crop-area", "0.5", "--verbose", "0"]
    assert main(argv) == 0
    return out


def test_train_writes_model_history_and_summary(trained, capsys):
    model = keras.saving.load_model(trained / "model.keras")
    assert model.input_shape == (None, 32, 32, 3) and model.output_shape == (None, 4)
    with open(trained / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["epoch"] for row in rows] == ["0", "1"]
    assert {"loss", "ce", "harmonization", "accuracy", "val_accuracy", "val_alignment",
            "val_alignment_log_prob", "val_gaming_gap"} <= set(rows[0])
    summary = json.loads((trained / "summary.json").read_text())
    assert summary["args"]["lam"] == 0.5 and summary["args"]["model"] == "small_cnn"
    assert summary["final_epoch"]["ce"] == pytest.approx(float(rows[-1]["ce"]))
    assert 0 <= summary["validation"]["accuracy"] <= 1 and summary["validation"]["count"] == 48
    assert not (trained / "backup").exists()  # removed once training completed
    assert sorted(os.listdir(trained)) == ["history.csv", "model.keras", "summary.json"]


def test_evaluate_reports_alignment_gaming_and_conflict_accuracy(trained, mini, tmp_path, capsys):
    out = tmp_path / "evaluation.json"
    assert main(["evaluate", "--weights", str(trained / "model.keras"), "--data", str(mini / "val-*"),
                 "--conflict", str(mini / "conflict-*"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "alignment score (log p)" in printed and "conflict-split accuracy" in printed
    result = json.loads(out.read_text())
    evaluation = result["evaluation"]
    assert evaluation["count"] == 48 and result["conflict"]["count"] == 32
    for key in ("accuracy", "alignment_score", "alignment_score_log_prob", "dice", "iou"):
        assert isinstance(evaluation[key], float)
    assert {"mean", "sem"} <= set(evaluation["spearman"]) and isinstance(evaluation["gaming"], bool)
    trained_summary = json.loads((trained / "summary.json").read_text())["validation"]
    assert evaluation["alignment_score"] == pytest.approx(trained_summary["alignment_score"], rel=1e-5)


def test_val_split_test_validates_on_uncropped_images_as_evaluate_split_test(mini, tmp_path, capsys):
    argv = ["train", "--model", "small_cnn_plain", "--train", str(mini / "train-*"), "--val", str(mini / "val-*"),
            "--val-split", "test", "--epochs", "1", "--out", str(tmp_path), "--image-size", "32",
            "--num-classes", "4", "--batch-size", "32", "--verbose", "0"]
    assert main(argv) == 0
    validation = json.loads((tmp_path / "summary.json").read_text())["validation"]
    for split, same in (("test", True), ("val", False)):  # "val" reads the central crop: other maps
        out = tmp_path / f"{split}.json"
        assert main(["evaluate", "--weights", str(tmp_path / "model.keras"), "--data", str(mini / "val-*"),
                     "--split", split, "--out", str(out)]) == 0
        score = json.loads(out.read_text())["evaluation"]["alignment_score"]
        assert (score == pytest.approx(validation["alignment_score"], rel=1e-5)) is same, split


def bad_invocations(mini, trained, tmp_path):
    weights_only = tmp_path / "model.weights.h5"
    keras.saving.load_model(trained / "model.keras").save_weights(weights_only)
    train = ["train", "--train", str(mini / "train-*"), "--val", str(mini / "val-*"),
             "--out", str(tmp_path / "out"), "--image-size", "32", "--num-classes", "4"]
    return {
        "missing weights": (["evaluate", "--weights", str(tmp_path / "none.keras"), "--data",
                             str(mini / "val-*")], "weights file not found"),
        "weights only": (["evaluate", "--weights", str(weights_only), "--data", str(mini / "val-*")],
                         "pass --model"),
        "unknown model": (train + ["--model", "resnet9", "--epochs", "1"],
                          "unknown model 'resnet9'; known models: small_cnn, small_cnn_plain, vgg16"),
        "empty glob": (["evaluate", "--weights", str(trained / "model.keras"), "--data",
                        str(tmp_path / "nothing-*")], "no file matches"),
        "zero epochs": (train + ["--model", "small_cnn", "--epochs", "0"], "--epochs: 0 must be >= 1"),
        "negative lambda": (train + ["--model", "small_cnn", "--epochs", "1", "--lambda", "-1"],
                            "--lambda: -1 must be >= 0.0"),
        "not a number": (train + ["--model", "small_cnn", "--epochs", "x"], "not a number: 'x'"),
        "cue agreement": (["mini", "--out", str(tmp_path / "m"), "--cue-agreement", "1.5"],
                          "--cue-agreement: 1.5 must be in (0, 1]"),
        "long warm-up": (train + ["--model", "small_cnn", "--epochs", "1", "--warmup-epochs", "3"],
                         "--warmup-epochs 3.0 exceeds --epochs 1"),
    }


def test_bad_arguments_give_one_line_and_exit_code_2(mini, trained, tmp_path, capsys):
    for name, (argv, expected) in bad_invocations(mini, trained, tmp_path).items():
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        stderr = capsys.readouterr().err
        assert exit_info.value.code == 2, name
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("harmonize: error: "), (name, stderr)
        assert expected in lines[0], (name, lines[0])


def test_console_script_exit_codes(tmp_path):
    script = os.path.join(os.path.dirname(sys.executable), "harmonize")
    assert subprocess.run([script, "--help"], capture_output=True, timeout=120).returncode == 0
    result = subprocess.run([script, "evaluate", "--weights", str(tmp_path / "x.keras"), "--data",
                             "y"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == f"harmonize: error: weights file not found: {tmp_path / 'x.keras'}"
