"""A timm network harmonized on the torch backend: the term's gradient, the whole run, and the saved
checkpoint attacked by adv-align (docs/backends.md, "timm models").

The Keras parts run in fresh interpreters with KERAS_BACKEND=torch (the backend is fixed per
process); the attack side runs here.
"""

import csv
import json
import os

import numpy as np
import pytest
import torch

from builders import cli_args, make_stimuli, run_python

from attacks_torch.cli import main as adv_align
from attacks_torch.models import load_model

TESTS = os.path.dirname(os.path.abspath(__file__))
TORCH = {"KERAS_BACKEND": "torch", "OMP_NUM_THREADS": "1"}  # torch's 2 threads beside TF's: 3x slower

TERM = """
    import json, sys
    import harmonization
    import keras
    import torch
    from keras import ops
    from safetensors.torch import save_file
    sys.path.insert(0, sys.argv[1])
    from builders import clickme_arrays, timm_test_resnet
    from harmonization.loss import harmonization_loss
    from harmonization.models import build_model
    from harmonization.models.timm_pixel import timm_network
    from harmonization.timm_models import data_config, resize
    from harmonization.training import Harmonizer
    from harmonization.training.backends import loss_and_parameter_gradients

    model, network = timm_test_resnet()  # every residual branch open
    arrays = clickme_arrays(4, 32, 4, seed=1)
    batch = {k: ops.convert_to_tensor(v) for k, v in arrays.items()}
    gradients = {}  # lambda 1000: (g(lambda) - g(0)) / lambda is the term's gradient, little of the
    for lam in (1000.0, 0.0):  # cross-entropy's rounding left in it
        harmonizer = Harmonizer(model, lambda_harmonization=lam, lambda_weights=0.0,
                                lambda_schedule="linear")
        harmonizer.compile(optimizer=keras.optimizers.SGD(0.0))
        harmonizer.optimizer.build(harmonizer.trainable_variables)
        gradients[lam] = loss_and_parameter_gradients(harmonizer, batch)[1]

    # the term's gradient in plain torch: saliency of the normalised image, through the resize
    config = data_config(network)
    inputs = model.get_layer("preprocess")(batch["image"]).detach().requires_grad_(True)
    logits = network.train()(resize(inputs.permute(0, 3, 1, 2), config["input_size"], config["interpolation"]))
    labels = ops.one_hot(batch["label"], 4)
    (saliency,) = torch.autograd.grad((logits * labels).sum(), inputs, create_graph=True)
    term = harmonization_loss(saliency.mean(-1), batch["heatmap"], batch["token"], harmonizer.levels)
    names = {id(p): name for name, p in network.named_parameters()}
    reference = dict(zip(names.values(), torch.autograd.grad(
        term, list(network.parameters()), allow_unused=True, materialize_grads=True)))
    out = {"term": {}}
    pairs = zip(gradients[1000.0], gradients[0.0])
    for variable, (with_term, without) in zip(harmonizer.trainable_variables, pairs):
        name = names[id(variable.value)]  # the Keras variable is the torch parameter itself
        got, expected = (with_term - without) / 1000.0, reference[name]
        out["term"][name] = [float(got.abs().max()), float(expected.abs().max()),
                             float((got - expected).abs().max())]

    # --weights: a checkpoint with another head keeps the body and a fresh head; one that fits nothing is refused
    keras.utils.set_random_seed(1)
    ten = build_model("timm:test_resnet", 10, 32)
    save_file(timm_network(ten).state_dict(), sys.argv[2])
    four = timm_network(build_model("timm:test_resnet", 4, 32, weights=sys.argv[2])).state_dict()
    source = timm_network(ten).state_dict()
    out["body_loaded"] = all(torch.equal(four[k], source[k]) for k in four if not k.startswith("fc."))
    out["head"] = list(four["fc.weight"].shape)
    save_file(timm_network(build_model("timm:test_convnext", 4, 32)).state_dict(), sys.argv[2])
    try:
        build_model("timm:test_resnet", 4, 32, weights=sys.argv[2])
    except ValueError as error:
        out["refused"] = str(error)
    print(json.dumps(out))
"""

# Exactly zero by the chain rule: after the last batch norm the network is ReLU, average pooling
# and a linear head, so these biases move the logits but not their input gradient.
NO_SALIENCY_PATH = {"fc.bias", "layer4.0.bn2.bias", "layer4.0.downsample.2.bias"}


def test_every_timm_parameter_gets_the_harmonization_gradient_it_should(tmp_path):
    result = run_python(TERM, env=TORCH, args=(TESTS, str(tmp_path / "other.safetensors")))
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    term = out["term"]
    assert len(term) == 47
    for name, (got, expected, error) in term.items():
        assert error <= 1e-4 * max(expected, 1e-6), (name, got, expected, error)
        if name in NO_SALIENCY_PATH:
            assert got == expected == 0.0, name
        else:
            assert got > 0, name
    assert out["body_loaded"] and out["head"][0] == 4
    refused = out.get("refused", "")
    assert "timm model 'test_resnet': weights" in refused and "do not fit" in refused, refused


RUN = """
    import json, sys
    import harmonization
    from harmonization.cli import main

    settings = json.loads(sys.argv[1])
    assert main(settings["argv"]) == 0
    import keras
    import numpy as np
    from harmonization.evaluation import evaluate_clickme, public
    from harmonization.inputs.keras_data import evaluation_data
    from harmonization.models import build_model

    model = build_model("timm:test_resnet", 4, 32, weights=settings["checkpoint"])
    logits = keras.ops.convert_to_numpy(model.predict(np.load(settings["pixels"]), verbose=0))
    # the reader the run evaluated with (on torch: the numpy reader, whose resized pixels differ
    # from tf.data's by up to 1e-3, enough to move a mean Spearman in its sixth decimal)
    val = evaluation_data(settings["val"], "test", batch_size=16, image_size=32, num_classes=4)
    print(json.dumps({"logits": logits.tolist(), "validation": public(evaluate_clickme(model, val))}))
"""


@pytest.fixture(scope="module")
def timm_run(tmp_path_factory) -> dict:
    """``harmonize train --backend torch --model timm:test_resnet`` for one epoch on a small
    ClickMe-mini; then the saved checkpoint rebuilt as a Keras model, its logits on random pixels
    and its validation evaluation."""
    from harmonization.data.mini import clickme_mini

    root = tmp_path_factory.mktemp("timm_run")
    mini = clickme_mini(str(root / "mini"), seed=0, train_size=32, val_size=16, conflict_size=8, stimuli_per_class=1)
    out = root / "run"
    pixels = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    np.save(root / "pixels.npy", pixels)
    argv = [
        "train",
        "--backend",
        "torch",
        "--model",
        "timm:test_resnet",
        "--train",
        mini["train"],
        "--val",
        mini["val"],
        "--val-split",
        "test",
        "--epochs",
        "1",
        "--out",
        str(out),
        "--image-size",
        "32",
        "--num-classes",
        "4",
        "--batch-size",
        "16",
        "--lr",
        "0.01",
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
        "--verbose",
        "0",
    ]
    settings = {
        "argv": argv,
        "checkpoint": str(out / "model.safetensors"),
        "val": mini["val"],
        "pixels": str(root / "pixels.npy"),
    }
    result = run_python(RUN, env=TORCH, args=(json.dumps(settings),))
    assert result.returncode == 0, result.stderr[-3000:]
    return {"root": root, "out": out, "pixels": pixels, **json.loads(result.stdout.strip().splitlines()[-1])}


def test_harmonize_train_saves_the_timm_network_as_safetensors(timm_run):
    from safetensors import safe_open

    out = timm_run["out"]
    assert sorted(p.name for p in out.iterdir()) == ["history.csv", "model.safetensors", "run.json", "summary.json"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["model"] == "timm:test_resnet" and summary["settings"]["backend"] == "torch"
    assert summary["model_path"] == str(out / "model.safetensors")
    with safe_open(out / "model.safetensors", "pt") as handle:
        assert handle.metadata()["timm_model"] == "test_resnet"
    # the file holds the trained network: rebuilt from it, the model evaluates as the run did
    for key in ("accuracy", "count"):
        assert timm_run["validation"][key] == summary["validation"][key]
    assert timm_run["validation"]["spearman"]["mean"] == pytest.approx(
        summary["validation"]["spearman"]["mean"], abs=1e-6
    )


EVALUATE = """
    import contextlib, io, json, sys
    from harmonization.cli import main

    out = {}
    for key, argv in json.loads(sys.argv[1]).items():
        errors = io.StringIO()
        with contextlib.redirect_stderr(errors):
            try:
                out[key] = [main(argv), ""]
            except SystemExit as stop:
                out[key] = [stop.code, errors.getvalue()]
    out["tensorflow"] = "tensorflow" in sys.modules
    print(json.dumps(out))
"""


def test_harmonize_evaluate_reads_the_timm_run_without_tensorflow(timm_run, tmp_path):
    from safetensors.torch import load_file, save_file

    out, root = timm_run["out"], timm_run["root"]
    tensors = load_file(out / "model.safetensors")
    save_file(tensors, tmp_path / "unnamed.safetensors")  # no metadata: no timm name
    missing = "layer1.0.bn1.running_mean"
    save_file(
        {k: v for k, v in tensors.items() if k != missing},
        tmp_path / "missing.safetensors",
        metadata={"format": "pt", "timm_model": "test_resnet", "image_size": "32"},
    )
    data = ["--data", str(root / "mini" / "val-*"), "--split", "test"]
    runs = {
        "folder": ["evaluate", "--weights", str(out), *data, "--out", str(tmp_path / "e.json")],
        **{
            name: ["evaluate", "--weights", str(tmp_path / f"{name}.safetensors"), *data]
            for name in ("unnamed", "missing")
        },
    }
    result = run_python(EVALUATE, env=TORCH, args=(json.dumps(runs),))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["tensorflow"] is False
    assert report["folder"] == [0, ""]
    evaluation = json.loads((tmp_path / "e.json").read_text())["evaluation"]
    reported = json.loads((out / "summary.json").read_text())["validation"]  # what training said
    for key in ("accuracy", "count", "mapped", "num_classes", "near_chance"):
        assert evaluation[key] == reported[key], key
    for key in ("spearman", "spearman_log_prob"):
        assert evaluation[key]["mean"] == pytest.approx(reported[key]["mean"], abs=1e-6), key
    assert evaluation["dice"] == pytest.approx(reported["dice"], abs=1e-6)
    unnamed = tmp_path / "unnamed.safetensors"
    assert report["unnamed"] == [
        2,
        f"harmonize: error: model file {unnamed}: its metadata names "
        "no timm model (files that `harmonize train --model timm:NAME` "
        "writes do)\n",
    ]
    code, error = report["missing"]
    assert code == 2 and error.count("\n") == 1, error
    assert f"weights '{tmp_path / 'missing.safetensors'}' do not fit: missing {missing} " in error


def test_the_attack_side_loads_the_checkpoint_with_the_same_logits_and_attacks_it(timm_run, capsys):
    checkpoint = str(timm_run["out"] / "model.safetensors")
    model = load_model("test_resnet", checkpoint=checkpoint, num_classes=4)
    with torch.no_grad():
        logits = model(torch.from_numpy(timm_run["pixels"] / 255).permute(0, 3, 1, 2).float()).numpy()
    keras_logits = np.array(timm_run["logits"])
    assert np.abs(logits - keras_logits).max() <= 1e-5 * max(1.0, np.abs(keras_logits).max())

    root = timm_run["root"]
    stimuli = make_stimuli(root, checkpoint, n=2, shards=1, name="test_resnet")
    argv = cli_args(f"harmonized=test_resnet@{checkpoint}", stimuli, root / "sweep", "--pgd-steps", "2")
    assert adv_align(argv) == 0
    assert "harmonized [l2_pgd]: done" in capsys.readouterr().out
    with open(root / "sweep" / "summary.csv") as handle:
        (row,) = csv.DictReader(handle)
    assert row["status"] == "done" and row["n_attacked"] == "2"  # labelled with its own predictions


def test_timm_models_need_the_torch_backend(tmp_path, capsys):
    from harmonization.cli import main

    argv = [
        "train",
        "--model",
        "timm:test_resnet",
        "--train",
        "x",
        "--val",
        "x",
        "--epochs",
        "1",
        "--out",
        str(tmp_path / "run"),
    ]
    for extra in ([], ["--backend", "tensorflow"]):
        with pytest.raises(SystemExit) as stopped:
            main(argv + extra)
        assert stopped.value.code == 2
        error = capsys.readouterr().err
        assert error == (
            "harmonize: error: --model timm:test_resnet: timm models train on --backend torch only, not on tensorflow\n"
        )
    assert not (tmp_path / "run").exists()
