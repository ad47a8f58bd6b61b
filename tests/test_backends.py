"""The Harmonizer on every Keras backend: one objective, the same numbers on TF, JAX and torch.

Each backend runs in its own interpreter (the backend is fixed when keras is first imported).
"""

import json
import os

import numpy as np
import pytest

from builders import run_python

TESTS = os.path.dirname(os.path.abspath(__file__))
BACKENDS = ("tensorflow", "jax", "torch")

PER_BACKEND = """
    import json, sys
    import harmonization
    import keras
    import numpy as np
    from keras import ops
    sys.path.insert(0, sys.argv[1])
    from builders import clickme_arrays
    from harmonization.models import build_model
    from harmonization.training import Harmonizer
    from harmonization.training.backends import loss_and_parameter_gradients

    class Probe(keras.layers.Layer):
        '''y = x in value; dy/dx = 1 + w per channel: w reaches the loss only through saliency.'''
        def build(self, shape):
            self.w = self.add_weight(shape=(shape[-1],), initializer="zeros", name="w")
        def call(self, x):
            return x + self.w * (x - ops.stop_gradient(x))

    def network(batch_norm):
        inputs = keras.Input((16, 16, 3))
        x = Probe(name="probe")(inputs)
        x = keras.layers.Conv2D(4, 3, padding="same", activation="tanh", name="conv_a")(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(name="bn")(x)
        x = keras.layers.Conv2D(4, 3, strides=2, activation="tanh", name="conv_b")(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
        return keras.Model(inputs, keras.layers.Dense(3, name="logits")(x), name="net")

    arrays = clickme_arrays(4, 16, 3, seed=1)
    arrays["token"] = np.array([1, 1, 0, 1], np.float32)
    batch = {name: ops.convert_to_tensor(value) for name, value in arrays.items()}
    out = {}
    for batch_norm in (False, True):
        rng = np.random.default_rng(0)
        harmonizer = Harmonizer(network(batch_norm), preprocess=keras.layers.Rescaling(1 / 255.0),
                                lambda_harmonization=3.0, lambda_weights=1e-2,
                                lambda_schedule="linear")
        for variable in harmonizer.trainable_variables:
            if "probe" not in variable.path:
                variable.assign(rng.normal(0, 0.4, variable.shape).astype("float32"))
        harmonizer.compile(optimizer=keras.optimizers.SGD(0.1))
        harmonizer.optimizer.build(harmonizer.trainable_variables)
        loss, gradients = loss_and_parameter_gradients(harmonizer, batch)
        out["bn" if batch_norm else "plain"] = {
            "loss": float(ops.convert_to_numpy(loss)),
            "gradients": {v.path: ops.convert_to_numpy(g).tolist()
                          for v, g in zip(harmonizer.trainable_variables, gradients)}}

    # evaluate_clickme on the plain network's weights, then again on new weights (one evaluator:
    # a compiled saliency function must read the current weights, not those it was traced with)
    from harmonization.evaluation import ClickMeEvaluator, public
    evaluator = ClickMeEvaluator(harmonizer)
    batches = [{k: v[i:i + 2] for k, v in arrays.items()} for i in (0, 2)]
    out["evaluations"] = []
    for scale in (1.0, 0.5):
        for variable in harmonizer.trainable_variables:
            variable.assign(variable * scale)
        result = evaluator(batches)
        out["evaluations"].append({**public(result), "per_image": {
            k: ops.convert_to_numpy(v).tolist() for k, v in result["per_image"].items()}})

    # a few fit steps on one batch lower the harmonization term
    keras.utils.set_random_seed(0)
    fitted = Harmonizer(build_model("small_cnn_plain", 3, 16), lambda_harmonization=10.0,
                        lambda_schedule="linear")
    fitted.compile(optimizer=keras.optimizers.Adam(3e-3))
    out["before"] = fitted.evaluate(arrays, batch_size=4, verbose=0, return_dict=True)
    out["history"] = fitted.fit(arrays, epochs=6, batch_size=4, verbose=0).history
    out["after"] = fitted.evaluate(arrays, batch_size=4, verbose=0, return_dict=True)

    # the validation loss weighs the term with the lambda of the current step (ramp of 4 steps)
    ramped = Harmonizer(build_model("small_cnn_plain", 3, 16), lambda_harmonization=4.0,
                        lambda_weights=0.0, lambda_schedule="linear", lambda_ramp_steps=4)
    ramped.compile(optimizer=keras.optimizers.SGD(0.0))
    out["ramped"] = []
    for steps in (1, 2):
        ramped.fit(arrays, epochs=steps, batch_size=4, verbose=0)
        out["ramped"].append(ramped.evaluate(arrays, batch_size=4, verbose=0, return_dict=True))
    print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def runs() -> dict:
    results = {}
    for backend in BACKENDS:
        result = run_python(PER_BACKEND, env={"KERAS_BACKEND": backend}, args=(TESTS,))
        assert result.returncode == 0, f"{backend}: {result.stderr[-3000:]}"
        results[backend] = json.loads(result.stdout.strip().splitlines()[-1])
    return results


@pytest.mark.parametrize("backend", BACKENDS)
def test_validation_loss_uses_the_lambda_of_the_current_step(runs, backend):
    # after 1 and then 3 steps of a 4-step ramp to 4.0: lambda 1.0, then 3.0 (on JAX the compiled
    # test step must read the step when it runs, not when it was traced)
    for logs, weight in zip(runs[backend]["ramped"], (1.0, 3.0)):
        np.testing.assert_allclose(logs["loss"], logs["ce"] + weight * logs["harmonization"], rtol=1e-5)


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_evaluate_clickme_agrees_with_tensorflow_and_reads_the_current_weights(runs, backend):
    reference, other = runs["tensorflow"]["evaluations"], runs[backend]["evaluations"]
    first, second = reference
    assert first["per_image"]["spearman"] != second["per_image"]["spearman"]  # new weights, new maps
    for expected, got in zip(reference, other):
        assert (got["count"], got["mapped"], got["num_classes"]) == (4, 3, 3)
        assert got["per_image"]["correct"] == expected["per_image"]["correct"]
        for name in ("spearman", "spearman_log_prob"):
            # ranks of 256 pixels: a float32 near-tie that orders differently moves it by ~2e-4
            np.testing.assert_allclose(got["per_image"][name], expected["per_image"][name], atol=2e-3, err_msg=name)


def relative_differences(one: dict, other: dict) -> dict:
    """{path: max |difference| / max |entry of one|} (an entry near 0 has no scale of its own)."""
    assert set(one) == set(other)
    return {
        path: np.max(np.abs(np.array(other[path]) - np.array(one[path]))) / np.max(np.abs(np.array(one[path])))
        for path in one
    }


def worst(differences: dict) -> float:
    """The largest difference, NaN if any is NaN (Python's max skips a NaN that is not first)."""
    return float(np.max(np.array(list(differences.values()), dtype=float)))


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_loss_and_every_gradient_agree_with_tensorflow(runs, backend):
    reference, other = runs["tensorflow"]["plain"], runs[backend]["plain"]
    np.testing.assert_allclose(other["loss"], reference["loss"], rtol=1e-5)
    differences = relative_differences(reference["gradients"], other["gradients"])
    assert worst(differences) <= 1e-5, differences


def test_the_probe_weight_gets_gradient_only_through_the_saliency(runs):
    # its value never changes the logits, so cross-entropy and decay (w = 0) give it nothing:
    # a non-zero gradient that agrees across backends is the second-order path on each
    for backend in BACKENDS:
        for network in ("plain", "bn"):
            assert np.min(np.abs(runs[backend][network]["gradients"]["probe/w"])) > 1e-4, backend


def test_through_batch_norm_jax_and_torch_agree_and_tensorflow_drops_a_term(runs):
    jax, torch, tf = (runs[backend]["bn"] for backend in ("jax", "torch", "tensorflow"))
    np.testing.assert_allclose([jax["loss"], torch["loss"]], tf["loss"], rtol=1e-5)
    differences = relative_differences(jax["gradients"], torch["gradients"])
    assert worst(differences) <= 1e-5, differences
    # Keras's TF batch norm takes its variance with tf.nn.moments, which stops the gradient at
    # the mean: first-order gradients are exact, but the second-order path through the batch
    # statistics misses a term, so the harmonization gradient of layers before a training-mode
    # batch norm differs (docs/backends.md). A failure here means TF became exact: update the docs.
    tf_differences = relative_differences(jax["gradients"], tf["gradients"])
    assert tf_differences["conv_a/kernel"] > 1e-3, tf_differences
    assert worst({path: tf_differences[path] for path in ("conv_b/kernel", "logits/kernel")}) <= 1e-5


@pytest.mark.parametrize("backend", BACKENDS)
def test_fit_lowers_the_harmonization_term_with_the_same_logs(runs, backend):
    history = runs[backend]["history"]
    assert set(history) == set(runs["tensorflow"]["history"]) == {"loss", "ce", "harmonization", "lambda", "accuracy"}
    assert history["lambda"] == [10.0] * 6
    before, after = runs[backend]["before"], runs[backend]["after"]
    assert set(before) == {"loss", "ce", "harmonization", "accuracy"}
    # no batch norm or dropout: evaluation sees the network that training did
    assert after["harmonization"] < 0.9 * before["harmonization"], (before, after)


TRAIN_ARGS = ["train", "--model", "small_cnn", "--train", "none-*", "--val", "none-*", "--epochs", "1"]


def test_harmonize_train_refuses_a_backend_whose_package_is_missing_in_one_line(tmp_path, capsys, monkeypatch):
    from harmonization.cli import main
    from harmonization.cli import train as train_cli

    assert train_cli.RUN_BACKENDS == BACKENDS
    real_find_spec = train_cli.importlib.util.find_spec
    monkeypatch.setattr(
        train_cli.importlib.util, "find_spec", lambda name: None if name == "jax" else real_find_spec(name)
    )
    with pytest.raises(SystemExit) as stopped:
        main([*TRAIN_ARGS, "--out", str(tmp_path / "jax"), "--backend", "jax"])
    assert stopped.value.code == 2
    assert "jax is not installed (pip install '.[jax]')" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "jax")


HARMONIZE = """
    import sys
    from harmonization.cli import main
    sys.exit(main(sys.argv[1:]))
"""


MINI_TRAIN, MINI_VAL = 320, 128


def mini_train_argv(mini: str, out, backend: str) -> list[str]:
    """The whole run, 3 epochs of the small CNN at 32 px on a small ClickMe-mini, from the
    initial weights in ``mini``/initial.weights.h5."""
    return [
        "train",
        "--backend",
        backend,
        "--model",
        "small_cnn_plain",
        "--train",
        f"{mini}/train-*",
        "--val",
        f"{mini}/val-*",
        "--val-split",
        "test",
        "--weights",
        f"{mini}/initial.weights.h5",
        "--epochs",
        "3",
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
        "2",
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


def initial_harmonization(mini: str) -> float:
    """The validation harmonization term of the initial weights (lambda 0.5), before training."""
    import keras

    from harmonization.data import load_clickme
    from harmonization.models import build_model
    from harmonization.training import Harmonizer

    keras.utils.set_random_seed(0)
    model = build_model("small_cnn_plain", 4, 32)
    model.save_weights(f"{mini}/initial.weights.h5")
    harmonizer = Harmonizer(model, lambda_harmonization=2.0, lambda_schedule="linear")
    harmonizer.compile(optimizer="adam")
    val = load_clickme(f"{mini}/val-*", "test", deterministic=True, batch_size=16, image_size=32, num_classes=4)
    return harmonizer.evaluate(val, verbose=0, return_dict=True)["harmonization"]


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory) -> dict:
    """{backend: (run folder, summary, history rows)} of ``harmonize train`` on each backend,
    each in a fresh interpreter, all from the same initial weights; "initial": the validation
    harmonization term of those weights."""
    import csv

    from harmonization.data.mini import clickme_mini

    root = tmp_path_factory.mktemp("cli_backends")
    mini = str(root / "mini")
    clickme_mini(mini, seed=0, train_size=MINI_TRAIN, val_size=MINI_VAL, conflict_size=8, stimuli_per_class=2)
    runs = {"initial": initial_harmonization(mini)}
    for backend in BACKENDS:
        out = root / backend
        result = run_python(HARMONIZE, args=tuple(mini_train_argv(mini, out, backend)))
        assert result.returncode == 0, f"{backend}: {result.stderr[-3000:]}"
        with open(out / "history.csv") as handle:
            history = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]
        runs[backend] = (out, json.loads((out / "summary.json").read_text()), history)
    return runs


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_harmonize_train_runs_whole_on_jax_and_torch_and_matches_tensorflow(cli_runs, backend):
    out, summary, history = cli_runs[backend]
    assert summary["settings"]["backend"] == backend
    assert json.loads((out / "run.json").read_text())["settings"]["backend"] == backend
    assert sorted(p.name for p in out.iterdir()) == ["history.csv", "model.keras", "run.json", "summary.json"]
    reference = cli_runs["tensorflow"]
    assert reference[1]["settings"]["backend"] == "tensorflow"
    assert set(history[0]) == set(reference[2][0])  # the same logs, the alignment callback's too
    assert 0 < history[-1]["val_alignment"] and [row["lambda"] for row in history] == [2.0, 2.0, 2.0]
    for _, _, rows in (reference, cli_runs[backend]):  # the term falls (to about 0.77 with --seed 0)
        assert rows[-1]["val_harmonization"] < 0.9 * cli_runs["initial"], (cli_runs["initial"], rows)
    # Every backend reads the same batches (the tf.data reader and the numpy reader follow one plan
    # per seed), so the runs differ only by the backends' arithmetic. With --seed 0 the TF and torch
    # histories agree to 0.003 in the harmonization term and exactly in accuracy; JAX's first epoch
    # lands on other validation predictions (0.250 against 0.312 of 4 classes) and its last term is
    # 0.142 against 0.164. The same initial weights reach the TF run's validation accuracy within 0.05.
    accuracies = {name: cli_runs[name][2][-1]["val_accuracy"] for name in ("tensorflow", backend)}
    assert abs(accuracies[backend] - accuracies["tensorflow"]) <= 0.05, accuracies
    if backend == "torch":
        for ours, theirs in zip(history, reference[2], strict=True):
            assert abs(ours["val_harmonization"] - theirs["val_harmonization"]) <= 0.01, (history, reference[2])


def test_harmonize_train_on_jax_splits_batches_over_every_device(cli_runs, tmp_path):
    mini = os.path.dirname(cli_runs["jax"][1]["settings"]["train"])
    argv = mini_train_argv(mini, tmp_path / "two", "jax")
    argv[argv.index("--epochs") + 1] = "1"
    argv[argv.index("--batch-size") + 1] = "24"  # 128 validation images: a last batch of 8
    result = run_python(HARMONIZE, args=tuple(argv), env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["devices"] == 2 and cli_runs["jax"][1]["devices"] == 1
    assert summary["validation"]["count"] == MINI_VAL  # the final evaluation reads every image
    argv[argv.index("--batch-size") + 1] = "15"
    refused = run_python(
        HARMONIZE,
        args=tuple(argv[: argv.index("--out") + 1] + [str(tmp_path / "odd")] + argv[argv.index("--out") + 2 :]),
        env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
    )
    assert refused.returncode == 2 and "--batch-size 15 does not split over the 2 jax devices" in refused.stderr


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_the_collapse_guard_stops_and_the_backup_resumes_on_jax_and_torch(tmp_path, backend):
    """Random labels hold the run at chance: the guard stops it after epoch 2 (exit 3), keeping its
    history and backups; with --no-collapse-guard the same command resumes from the backup."""
    from builders import write_random_label_shards

    shards = write_random_label_shards(tmp_path / "data", n=64)
    out = tmp_path / "run"
    argv = [
        "train",
        "--backend",
        backend,
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
    stopped = run_python(HARMONIZE, args=tuple(argv))
    assert stopped.returncode == 3, stopped.stderr[-3000:]
    assert "training stopped after epoch 2" in stopped.stderr.strip().splitlines()[-1]
    assert sorted(p.name for p in (out / "backup").iterdir()) == ["epoch-0001.weights.h5", "epoch-0002.weights.h5"]
    resumed = run_python(HARMONIZE, args=(*argv, "--no-collapse-guard"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed_epochs"] == 2 and summary["settings"]["backend"] == backend
    with open(out / "history.csv") as handle:
        assert [line.split(",")[0] for line in handle.read().splitlines()[1:]] == ["0", "1", "2"]


def test_several_workers_off_tensorflow_are_refused_in_one_line(tmp_path):
    two_workers = json.dumps(
        {"cluster": {"worker": ["localhost:1", "localhost:2"]}, "task": {"type": "worker", "index": 0}}
    )
    result = run_python(
        HARMONIZE,
        args=(*TRAIN_ARGS, "--out", str(tmp_path / "run"), "--backend", "torch"),
        env={"TF_CONFIG": two_workers},
    )
    assert result.returncode == 2, result.stderr[-2000:]
    error = result.stderr.strip().splitlines()
    assert "TF_CONFIG names 2 workers: multi-worker training runs on --backend tensorflow only" in error[-1]
    assert not os.path.exists(tmp_path / "run")


def test_a_run_resumed_on_another_backend_is_refused_in_one_line(cli_runs, capsys):
    from harmonization.cli import main

    out, summary, _ = cli_runs["jax"]
    argv = mini_train_argv(os.path.dirname(summary["settings"]["train"]), out, "tensorflow")
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "--backend jax (now tensorflow)" in error, error


def test_harmonize_train_sets_the_backend_before_keras_is_imported():
    result = run_python(
        """
        import os, sys
        from harmonization.cli.train import select_backend
        select_backend("tensorflow")
        assert "keras" not in sys.modules
        print(os.environ["KERAS_BACKEND"])
    """,
        env={"KERAS_BACKEND": "torch"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "tensorflow"


DATA_PARALLEL = """
    import json, sys
    import harmonization
    import jax
    import keras
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    from builders import clickme_arrays
    from harmonization.models import build_model
    from harmonization.training import Harmonizer

    def train(distributed):
        keras.utils.set_random_seed(0)
        if distributed:
            keras.distribution.set_distribution(keras.distribution.DataParallel())
        harmonizer = Harmonizer(build_model("small_cnn", 3, 16), lambda_harmonization=2.0,
                                lambda_schedule="linear")
        harmonizer.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
        arrays = clickme_arrays(16, 16, 3, seed=5)
        history = harmonizer.fit(arrays, epochs=2, batch_size=8, shuffle=False, verbose=0).history
        return history, [keras.ops.convert_to_numpy(v.value).tolist() for v in harmonizer.weights]

    print(json.dumps({"devices": len(jax.devices()), "one": train(False), "two": train(True)}))
"""


def test_jax_data_parallel_over_two_devices_equals_one_device():
    result = run_python(
        DATA_PARALLEL,
        args=(TESTS,),
        env={"KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = json.loads(result.stdout.strip().splitlines()[-1])
    assert runs["devices"] == 2
    (one, one_weights), (two, two_weights) = runs["one"], runs["two"]
    assert one["lambda"] == [2.0, 2.0]
    for name in one:
        np.testing.assert_allclose(two[name], one[name], rtol=1e-5, err_msg=name)
    for expected, got in zip(one_weights, two_weights):  # after 4 steps
        expected, got = np.array(expected), np.array(got)
        assert np.max(np.abs(got - expected)) <= 1e-5 * max(np.max(np.abs(expected)), 1e-6)
