"""The `harmonize` console script on ClickMe-mini: mini, train, evaluate, and its error lines."""

import csv
import errno
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import builders  # noqa: F401  (loads harmonization before TensorFlow)
import keras

from harmonization.cli import main
from harmonization.clickme import iter_clickme
from harmonization.models import build_model

MINI_SIZES = ["--train-size", "96", "--val-size", "48", "--conflict-size", "32", "--stimuli-per-class", "2"]


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


def test_mini_kind_writes_another_test_bed_with_its_own_class_count(tmp_path, capsys):
    from harmonization.data.testbeds import DEFAULT_CLASSES

    assert main(["mini", "--out", str(tmp_path), "--kind", "stripes", *MINI_SIZES]) == 0
    splits = json.loads(capsys.readouterr().out)
    assert splits["num_classes"] == DEFAULT_CLASSES["stripes"] != 4
    assert sorted(os.listdir(tmp_path)) != [] and os.path.dirname(splits["train"]) == str(tmp_path)


def test_zoo_lists_the_seven_published_files_with_their_download_location(capsys):
    from harmonization.models.published import PUBLISHED_NAMES, URL

    assert main(["zoo", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert [row["name"] for row in table] == list(PUBLISHED_NAMES) and len(table) == 7
    assert all(row["url"] == URL.format(file=row["file"]) for row in table)
    assert main(["zoo"]) == 0
    printed = capsys.readouterr().out
    assert all(row["file"] in printed and row["url"] in printed for row in table)


def train_argv(mini, out) -> list[str]:
    return [
        "train",
        "--model",
        "small_cnn",
        "--train",
        str(mini / "train-*"),
        "--val",
        str(mini / "val-*"),
        "--epochs",
        "2",
        "--out",
        str(out),
        "--image-size",
        "32",
        "--num-classes",
        "4",
        "--batch-size",
        "32",
        "--lambda",
        "0.5",
        "--seed",
        "1",
        "--min-crop-area",
        "0.5",
        "--verbose",
        "0",
    ]


@pytest.fixture(scope="module")
def trained(mini, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(train_argv(mini, out)) == 0
    return out


def one_line_exit(argv, capsys) -> tuple[int, str, str]:
    """Run ``main(argv)``, expecting an exit with one line on stderr; (exit code, that line, stdout)."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return exit_info.value.code, lines[0], captured.out


def test_train_writes_model_history_and_summary(trained, capsys):
    model = keras.saving.load_model(trained / "model.keras")
    assert model.input_shape == (None, 32, 32, 3) and model.output_shape == (None, 4)
    with open(trained / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["epoch"] for row in rows] == ["0", "1"]
    assert {
        "loss",
        "ce",
        "harmonization",
        "accuracy",
        "val_accuracy",
        "val_alignment",
        "val_alignment_log_prob",
        "val_gaming_gap",
    } <= set(rows[0])
    summary = json.loads((trained / "summary.json").read_text())
    assert summary["settings"]["lambda_harmonization"] == 0.5 and summary["settings"]["model"] == "small_cnn"
    assert summary["settings"]["lambda_schedule"] == "adaptive"  # the default
    assert summary["final_epoch"]["ce"] == pytest.approx(float(rows[-1]["ce"]))
    assert 0 <= summary["validation"]["accuracy"] <= 1 and summary["validation"]["count"] == 48
    assert not (trained / "backup").exists()  # removed once training completed
    assert sorted(os.listdir(trained)) == ["history.csv", "model.keras", "run.json", "summary.json"]


def test_train_again_says_complete_and_refuses_other_settings(mini, trained, capsys):
    before = {name: (trained / name).read_bytes() for name in os.listdir(trained)}
    assert main(train_argv(mini, trained)) == 0
    assert "the run is already complete (2 epochs" in capsys.readouterr().out
    code, line, _ = one_line_exit(train_argv(mini, trained) + ["--lr", "0.01", "--lambda", "1"], capsys)
    assert code == 2
    assert line == (
        f"harmonize: error: {trained} holds a run started with other settings: "
        "--lambda 0.5 (now 1.0), --lr 0.1 (now 0.01); --fresh starts over"
    )
    assert {name: (trained / name).read_bytes() for name in os.listdir(trained)} == before


def test_evaluate_reports_alignment_gaming_and_conflict_accuracy(trained, mini, tmp_path, capsys):
    out = tmp_path / "evaluation.json"
    assert (
        main(
            [
                "evaluate",
                "--weights",
                str(trained / "model.keras"),
                "--data",
                str(mini / "val-*"),
                "--conflict",
                str(mini / "conflict-*"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "alignment score (log p)" in printed and "conflict-split accuracy" in printed
    result = json.loads(out.read_text())
    evaluation = result["evaluation"]
    assert evaluation["count"] == 48 and result["conflict"]["count"] == 32
    for key in ("accuracy", "alignment_score", "alignment_score_log_prob", "dice", "iou"):
        assert isinstance(evaluation[key], float)
    assert {"mean", "sem"} <= set(evaluation["spearman"]) and isinstance(evaluation["gaming"], bool)
    assert evaluation["num_classes"] == 4 and evaluation["chance_threshold"] == pytest.approx(0.4)
    assert evaluation["near_chance"] == (evaluation["accuracy"] < 0.4)
    assert ("WARNING: accuracy" in printed) == evaluation["near_chance"]
    trained_summary = json.loads((trained / "summary.json").read_text())["validation"]
    assert evaluation["alignment_score"] == pytest.approx(trained_summary["alignment_score"], rel=1e-5)
    # conflict accuracy recomputed outside the evaluator: the saved model's top class on each
    # conflict image, read record by record, against its label
    records = [r for path in sorted(mini.glob("conflict-*")) for r in iter_clickme(path)]
    model = keras.saving.load_model(trained / "model.keras")
    predicted = np.argmax(model.predict(np.stack([r.image for r in records]), verbose=0), axis=1)
    expected = float(np.mean(predicted == np.array([r.label for r in records])))
    assert len(records) == 32
    assert result["conflict"]["accuracy"] == pytest.approx(expected, abs=1e-6)
    assert f"conflict-split accuracy   {expected:.4f} (32 images)" in printed


def test_val_split_test_validates_on_uncropped_images_as_evaluate_split_test(mini, tmp_path, capsys):
    argv = [
        "train",
        "--model",
        "small_cnn_plain",
        "--train",
        str(mini / "train-*"),
        "--val",
        str(mini / "val-*"),
        "--val-split",
        "test",
        "--epochs",
        "1",
        "--out",
        str(tmp_path),
        "--image-size",
        "32",
        "--num-classes",
        "4",
        "--batch-size",
        "32",
        "--verbose",
        "0",
    ]
    assert main(argv) == 0
    validation = json.loads((tmp_path / "summary.json").read_text())["validation"]
    for split, same in (("test", True), ("val", False)):  # "val" reads the central crop: other maps
        out = tmp_path / f"{split}.json"
        assert (
            main(
                [
                    "evaluate",
                    "--weights",
                    str(tmp_path / "model.keras"),
                    "--data",
                    str(mini / "val-*"),
                    "--split",
                    split,
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
        score = json.loads(out.read_text())["evaluation"]["alignment_score"]
        assert (score == pytest.approx(validation["alignment_score"], rel=1e-5)) is same, split


def model_at_chance(path):
    """A small_cnn that always answers class 0 (its gradients stay those of a random network)."""
    keras.utils.set_random_seed(0)
    model = build_model("small_cnn", 4, 32)
    head = [layer for layer in model.get_layer("backbone").layers if getattr(layer, "bias", None) is not None][-1]
    head.bias.assign(np.array([100.0, 0.0, 0.0, 0.0], np.float32))
    model.save(path)
    return path


def test_evaluate_marks_a_model_at_chance_and_its_alignment_as_unreliable(mini, tmp_path, capsys):
    out = tmp_path / "evaluation.json"
    assert (
        main(
            [
                "evaluate",
                "--weights",
                str(model_at_chance(tmp_path / "chance.keras")),
                "--data",
                str(mini / "val-*"),
                "--split",
                "test",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    evaluation = json.loads(out.read_text())["evaluation"]
    assert evaluation["near_chance"] is True and evaluation["accuracy"] < evaluation["chance_threshold"] == 0.4
    assert "WARNING: accuracy" in printed and "near chance (below 0.4000 for 4 classes)" in printed
    assert printed.count("(unreliable: near chance)") == 3  # both alignment scores, Dice and IoU


def test_evaluate_on_a_full_disk_keeps_the_old_file_and_prints_the_results(
    trained, mini, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "evaluation.json"
    out.write_text('{"old": true}')
    argv = ["evaluate", "--weights", str(trained / "model.keras"), "--data", str(mini / "val-*"), "--out", str(out)]

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    code, line, printed = one_line_exit(argv, capsys)
    monkeypatch.undo()
    assert code == 2 and line == f"harmonize: error: cannot write {out}: No space left on device"
    assert out.read_text() == '{"old": true}' and os.listdir(tmp_path) == ["evaluation.json"]
    assert "alignment score (logit)" in printed  # the finished evaluation is not lost


def bad_invocations(mini, trained, tmp_path):
    weights_only = tmp_path / "model.weights.h5"
    keras.saving.load_model(trained / "model.keras").save_weights(weights_only)
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    train = [
        "train",
        "--train",
        str(mini / "train-*"),
        "--val",
        str(mini / "val-*"),
        "--out",
        str(tmp_path / "out"),
        "--image-size",
        "32",
        "--num-classes",
        "4",
    ]
    evaluate = ["evaluate", "--weights", str(trained / "model.keras"), "--data", str(mini / "val-*")]
    return {
        "missing weights": (
            ["evaluate", "--weights", str(tmp_path / "none.keras"), "--data", str(mini / "val-*")],
            "weights file not found",
        ),
        "weights only": (["evaluate", "--weights", str(weights_only), "--data", str(mini / "val-*")], "pass --model"),
        "unknown model": (
            train + ["--model", "resnet9", "--epochs", "1"],
            "unknown --model 'resnet9'; known models: small_cnn, small_cnn_plain, vgg16",
        ),
        "image size": (
            evaluate + ["--image-size", "64"],
            f"--image-size 64 does not fit {trained / 'model.keras'}, which takes 32x32 pixels",
        ),
        "out is a file": (
            train + ["--model", "small_cnn", "--epochs", "1", "--out", str(a_file)],
            f"cannot write {a_file}: Not a directory",
        ),
        "evaluation out is a folder": (evaluate + ["--out", str(tmp_path)], f"--out {tmp_path} is a folder"),
        "evaluation out under a file": (evaluate + ["--out", str(a_file / "e.json")], f"{a_file} is not a folder"),
        "lambda schedule": (
            train + ["--model", "small_cnn", "--epochs", "1", "--lambda-schedule", "cosine"],
            "--lambda-schedule must be one of adaptive, linear, got 'cosine'",
        ),
        "saliency": (
            train + ["--model", "small_cnn", "--epochs", "1", "--saliency", "squared"],
            "--saliency must be one of signed, absolute, got 'squared'",
        ),
        "empty glob": (
            ["evaluate", "--weights", str(trained / "model.keras"), "--data", str(tmp_path / "nothing-*")],
            str(tmp_path / "nothing-*"),
        ),
        "zero epochs": (train + ["--model", "small_cnn", "--epochs", "0"], "--epochs: 0 must be >= 1"),
        "negative lambda": (
            train + ["--model", "small_cnn", "--epochs", "1", "--lambda", "-1"],
            "--lambda: -1 must be >= 0.0",
        ),
        "not a number": (train + ["--model", "small_cnn", "--epochs", "x"], "not a number: 'x'"),
        "cue agreement": (
            ["mini", "--out", str(tmp_path / "m"), "--cue-agreement", "1.5"],
            "--cue-agreement: 1.5 must be in (0, 1]",
        ),
        "long warm-up": (
            train + ["--model", "small_cnn", "--epochs", "1", "--warmup-epochs", "3"],
            "--warmup-epochs 3.0 exceeds --epochs 1",
        ),
        "not a published spec": (
            ["check-accuracy", "--model", "vgg16", "--imagenet-val", str(tmp_path)],
            "--model 'vgg16': expected published:NAME:PATH",
        ),
        "unknown kind": (
            ["mini", "--out", str(tmp_path / "k"), "--kind", "dots"],
            "kind must be one of mini, edges, stripes, neighbour, got 'dots'",
        ),
        "missing published file": (
            ["check-accuracy", "--model", f"published:vgg16:{tmp_path / 'no.h5'}", "--imagenet-val", str(tmp_path)],
            str(tmp_path / "no.h5"),
        ),
    }


def test_bad_arguments_give_one_line_and_exit_code_2(mini, trained, tmp_path, capsys):
    for name, (argv, expected) in bad_invocations(mini, trained, tmp_path).items():
        code, line, _ = one_line_exit(argv, capsys)
        assert code == 2, name
        assert line.startswith("harmonize: error: ") and expected in line, (name, line)


def test_console_script_exit_codes(tmp_path):
    script = os.path.join(os.path.dirname(sys.executable), "harmonize")
    assert subprocess.run([script, "--help"], capture_output=True, timeout=120).returncode == 0
    as_module = subprocess.run(
        [sys.executable, "-m", "harmonization.cli", "train", "--help"], capture_output=True, text=True, timeout=120
    )
    assert as_module.returncode == 0 and "--lambda-schedule" in as_module.stdout
    result = subprocess.run(
        [script, "evaluate", "--weights", str(tmp_path / "x.keras"), "--data", "y"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"harmonize: error: weights file not found: {tmp_path / 'x.keras'}"
