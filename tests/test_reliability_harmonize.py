"""Issue #22, harmonization side: chance from the data, no output over an input, bounded numeric
flags, one-line errors for models the evaluation cannot take (each case builds its bad input)."""

import json
import os

import numpy as np
import pytest

import builders
import keras

from harmonization.cli import main
from harmonization.models import build_model
from harmonization.models.pixel import assemble, identity


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """48 4-class ClickMe records at 32 px; returns their glob."""
    return builders.write_random_label_shards(tmp_path_factory.mktemp("data"), n=48, seed=5)


def one_line_exit(argv, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return exit_info.value.code, lines[0]


def constant_model(path, num_classes: int):
    """A small_cnn with a ``num_classes`` head that always answers class 0."""
    keras.utils.set_random_seed(0)
    model = build_model("small_cnn", num_classes, 32)
    head = [layer for layer in model.get_layer("backbone").layers if getattr(layer, "bias", None) is not None][-1]
    head.bias.assign(np.eye(num_classes, dtype=np.float32)[0] * 100)
    model.save(path)
    return model


def evaluate(weights, data, out) -> dict:
    assert main(["evaluate", "--weights", str(weights), "--data", data, "--split", "test", "--out", str(out)]) == 0
    return json.loads(out.read_text())["evaluation"]


def test_chance_is_taken_from_the_classes_in_the_data_not_the_head(shards, tmp_path, capsys):
    constant_model(tmp_path / "wide.keras", 100)
    result = evaluate(tmp_path / "wide.keras", shards, tmp_path / "wide.json")
    printed = capsys.readouterr().out
    labels = builders.clickme_arrays(48, seed=5)["label"]
    majority = np.bincount(labels).max() / labels.size
    assert result["accuracy"] == pytest.approx(np.mean(labels == 0))
    assert result["accuracy"] <= majority < 0.4
    assert (result["num_classes"], result["head_classes"], result["head_wider_than_data"]) == (4, 100, True)
    assert result["near_chance"] is True and result["chance_threshold"] == pytest.approx(0.4)
    assert (result["head_activation"], result["saliency_of_logits"]) == ("log_softmax", True)  # logits
    assert "NOTE: the model's head has 100 classes, the evaluated labels 4" in printed
    assert "WARNING: accuracy" in printed


def linear_and_softmax_heads(tmp_path):
    """The same weights with a linear head, a Dense(softmax) head and a Softmax layer after it."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    dense = keras.layers.Dense(4, name="head")
    linear = keras.Model(inputs, dense(x), name="backbone")
    paths = {}
    for kind in ("linear", "dense_softmax", "softmax_layer"):
        backbone = keras.models.clone_model(linear)
        backbone.set_weights(linear.get_weights())
        if kind == "dense_softmax":
            backbone.get_layer("head").activation = keras.activations.softmax
        if kind == "softmax_layer":
            backbone = keras.Model(backbone.input, keras.layers.Softmax()(backbone.output), name="backbone")
        paths[kind] = tmp_path / f"{kind}.keras"
        assemble(kind, identity(), backbone, 32).save(paths[kind])
    return paths


def test_a_softmax_head_is_evaluated_on_its_logits_or_flagged(shards, tmp_path, capsys):
    paths = linear_and_softmax_heads(tmp_path)
    results = {kind: evaluate(path, shards, tmp_path / f"{kind}.json") for kind, path in paths.items()}
    printed = capsys.readouterr().out
    linear, dense, layer = results["linear"], results["dense_softmax"], results["softmax_layer"]
    assert (linear["head_activation"], linear["saliency_of_logits"]) == (None, True)
    assert (dense["head_activation"], dense["saliency_of_logits"]) == ("softmax", True)
    for key in ("accuracy", "alignment_score", "alignment_score_log_prob", "gaming_gap"):
        assert dense[key] == pytest.approx(linear[key], rel=1e-5, abs=1e-6), key
    assert (layer["head_activation"], layer["saliency_of_logits"]) == ("softmax", False)
    assert layer["accuracy"] == linear["accuracy"]
    assert printed.count("WARNING: the model's outputs are a softmax of its logits") == 1


def test_evaluate_refuses_an_out_that_is_one_of_its_inputs(shards, tmp_path, capsys):
    constant_model(tmp_path / "model.keras", 4)
    before = (tmp_path / "model.keras").read_bytes()
    os.symlink(tmp_path / "model.keras", tmp_path / "link.json")
    shard = sorted(p for p in os.listdir(os.path.dirname(shards)))[0]
    shard_path = os.path.join(os.path.dirname(shards), shard)
    shard_bytes = open(shard_path, "rb").read()
    weights = ["evaluate", "--weights", str(tmp_path / "model.keras"), "--data", shards]
    for out, culprit in (
        (tmp_path / "model.keras", tmp_path / "model.keras"),
        (tmp_path / "link.json", tmp_path / "model.keras"),
        (shard_path, shard_path),
    ):
        code, line = one_line_exit(weights + ["--out", str(out)], capsys)
        assert code == 2 and line.startswith(f"harmonize: error: --out {out} is an input of this command")
        assert str(culprit) in line
    assert (tmp_path / "model.keras").read_bytes() == before
    assert open(shard_path, "rb").read() == shard_bytes


def test_train_refuses_a_run_folder_that_holds_its_weights(shards, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    constant_model(run / "model.keras", 4)
    before = (run / "model.keras").read_bytes()
    code, line = one_line_exit(
        [
            "train",
            "--model",
            "small_cnn",
            "--train",
            shards,
            "--val",
            shards,
            "--epochs",
            "1",
            "--out",
            str(run),
            "--weights",
            str(run / "model.keras"),
            "--fresh",
        ],
        capsys,
    )
    assert code == 2 and f"--out {run / 'model.keras'} is an input of this command" in line
    assert (run / "model.keras").read_bytes() == before


@pytest.mark.parametrize(
    "flag, value, expected",
    [
        ("--num-classes", str(2**40), f"{2**40} must be <= 100000"),
        ("--seed", str(2**64), f"{2**64} must be <= {2**32 - 1}"),
        ("--image-size", "100000", "100000 must be <= 4096"),
        ("--lambda-ramp-epochs", "1e308", "1e308 must be <= 100000"),
        ("--steps-per-epoch", str(10**12), f"{10**12} must be <= 10000000"),
        ("--steps-per-epoch", "1e12", "not a number: '1e12'"),
        ("--lambda", "nan", "nan must be >= 0.0"),
        ("--lr", "inf", "inf must be > 0.0"),
        ("--batch-size", "0", "0 must be >= 1"),
        ("--epochs", "-1", "-1 must be >= 1"),
        ("--warmup-epochs", "-inf", "-inf must be >= 0.0"),
        ("--label-smoothing", "1", "1 must be <= 0.99"),
        ("--decay-epochs", "5,1e300", "1e300 must be <= 100000"),
    ],
)
def test_numeric_flags_are_bounded_in_one_line(flag, value, expected, tmp_path, capsys):
    argv = [
        "train",
        "--model",
        "small_cnn",
        "--train",
        "x",
        "--val",
        "x",
        "--epochs",
        "1",
        "--out",
        str(tmp_path / "run"),
        f"{flag}={value}",
    ]
    code, line = one_line_exit(argv, capsys)
    assert code == 2 and line.startswith(f"harmonize: error: argument {flag}: {expected}")
    assert os.listdir(tmp_path) == []


def test_evaluate_and_mini_bound_their_numbers_too(tmp_path, capsys):
    for argv, expected in (
        (["evaluate", "--weights", "w.keras", "--data", "d", "--num-classes", str(2**40)], "argument --num-classes"),
        (["evaluate", "--weights", "w.keras", "--data", "d", "--batch-size", str(10**9)], "argument --batch-size"),
        (["mini", "--out", str(tmp_path / "m"), "--seed", str(2**64)], "argument --seed"),
        (["mini", "--out", str(tmp_path / "m"), "--image-size", "100000"], "argument --image-size"),
        (["mini", "--out", str(tmp_path / "m"), "--train-size", str(10**12)], "argument --train-size"),
    ):
        code, line = one_line_exit(argv, capsys)
        assert code == 2 and expected in line, line
    assert os.listdir(tmp_path) == []


def odd_models(tmp_path):
    """A pixel model with three outputs, and one that takes 1-channel images."""
    pixels = keras.Input((32, 32, 3), name="pixels")
    preprocess = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Identity()], name="preprocess")
    features = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(preprocess(pixels)))
    heads = [keras.layers.Dense(4, name=f"head{i}")(features) for i in range(3)]
    keras.Model(pixels, heads, name="three").save(tmp_path / "three.keras")
    gray = keras.Input((32, 32, 1), name="pixels")
    preprocess = keras.Sequential([keras.Input((32, 32, 1)), keras.layers.Identity()], name="preprocess")
    backbone = keras.Sequential(
        [
            keras.Input((32, 32, 1)),
            keras.layers.Conv2D(4, 3),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(4),
        ],
        name="backbone",
    )
    keras.Model(gray, backbone(preprocess(gray)), name="gray").save(tmp_path / "gray.keras")
    return {"three": "has 3 outputs", "gray": "takes 1-channel images"}


def test_evaluate_refuses_models_it_cannot_take_in_one_line(shards, tmp_path, capsys):
    for name, expected in odd_models(tmp_path).items():
        weights = tmp_path / f"{name}.keras"
        before = weights.read_bytes()
        code, line = one_line_exit(
            ["evaluate", "--weights", str(weights), "--data", shards, "--out", str(tmp_path / f"{name}.json")], capsys
        )
        assert code == 2 and line.startswith("harmonize: error: ") and expected in line, line
        assert weights.read_bytes() == before and not (tmp_path / f"{name}.json").exists()


def test_ctrl_c_prints_one_line_exit_130_and_keeps_what_was_written(shards, tmp_path, monkeypatch, capsys):
    import signal

    from harmonization import evaluation

    constant_model(tmp_path / "model.keras", 4)
    out = tmp_path / "evaluation.json"
    out.write_text('{"old": true}')

    def interrupted(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, delivered mid-evaluation

    monkeypatch.setattr(evaluation.ClickMeEvaluator, "__call__", interrupted)
    code, line = one_line_exit(
        ["evaluate", "--weights", str(tmp_path / "model.keras"), "--data", shards, "--out", str(out)], capsys
    )
    assert code == 130 and line.startswith("harmonize: interrupted")
    assert out.read_text() == '{"old": true}' and sorted(os.listdir(tmp_path)) == ["evaluation.json", "model.keras"]


def test_chance_classes_counts_the_classes_present_at_most_the_head():
    from harmonization.metrics import chance_classes

    labels = np.array([0, 3, 3, 7, 0])
    assert chance_classes(labels) == 3 and chance_classes(labels, 100) == 3 and chance_classes(labels, 2) == 2


def test_check_accuracy_refuses_an_out_that_is_its_model_file(tmp_path, capsys):
    model = tmp_path / "vgg16.h5"
    model.write_bytes(b"published weights")
    code, line = one_line_exit(
        ["check-accuracy", "--model", f"published:vgg16:{model}", "--imagenet-val", str(tmp_path), "--out", str(model)],
        capsys,
    )
    assert code == 2 and line.startswith(f"harmonize: error: --out {model} is an input of this command")
    assert model.read_bytes() == b"published weights"
