"""The Harmonizer model: its gradients, its logs, callbacks, saving, resuming; the recipe."""

import csv
import glob
import json
import os
import signal

import numpy as np
import pytest

from builders import as_dataset, clickme_arrays, run_python  # loads harmonization first
import keras
import tensorflow as tf

import harmonization.objective as objective_module
from harmonization.evaluation import AlignmentCallback
from harmonization.loss import decayed_variables, harmonization_loss
from harmonization.metrics import chance_threshold
from harmonization.models import build_model
from harmonization.saliency import signed_saliency
from harmonization.training import Harmonizer, WarmupStepDecay, recipe, set_precision
from harmonization.training.formats import HARMONIZER_FORMAT

TESTS = os.path.dirname(os.path.abspath(__file__))


def harmonization_gradients(model: keras.Model, size: int, n: int = 2):
    data = clickme_arrays(n, size, model.output_shape[-1], seed=3)
    backbone = model.get_layer("backbone")
    labels = tf.one_hot(data["label"], model.output_shape[-1])
    with tf.GradientTape() as tape:
        inputs = model.get_layer("preprocess")(data["image"])
        saliency, _ = signed_saliency(backbone, inputs, labels)
        value = harmonization_loss(saliency, data["heatmap"], data["token"])
    gradients = tape.gradient(value, backbone.trainable_variables)
    return {v.path: g for v, g in zip(backbone.trainable_variables, gradients)}


def without_gradient(gradients: dict) -> set:
    assert all(np.isfinite(g.numpy()).all() for g in gradients.values() if g is not None)
    return {path for path, g in gradients.items() if g is None or not np.any(g.numpy())}


@pytest.mark.compat
def test_harmonization_term_reaches_every_weight_of_the_small_cnn():
    gradients = harmonization_gradients(build_model("small_cnn", 4, 32), 32)
    assert len(gradients) == 16
    assert without_gradient(gradients) == set()


def test_harmonization_term_reaches_resnet50v2_weights():
    gradients = harmonization_gradients(build_model("resnet50v2", 4, 64), 64)
    # d logit / d input cannot depend on the logits bias, nor on the shift of the last batch
    # norm (it only moves ReLU kinks): those two get no gradient by construction. Any other
    # missing gradient would be a cut second-order path (docs/traps.md, "Grappler and double backprop" and "Bilinear resize").
    assert without_gradient(gradients) == {"logits/bias", "post_bn/beta"}
    assert len(gradients) == 174


def reference_epoch_logs(harmonizer: Harmonizer, arrays: dict, batch_size: int, lam: float, training: bool) -> dict:
    """Per-sample means of the terms, computed outside the Harmonizer (numpy CE, batch MSE)."""
    classes = harmonizer.num_classes
    decay = sum(
        0.5 * np.sum(v.numpy().astype(np.float64) ** 2) for v in decayed_variables(harmonizer.trainable_variables)
    )
    ce, harm, correct = [], [], []
    for start in range(0, len(arrays["label"]), batch_size):
        part = {k: v[start : start + batch_size] for k, v in arrays.items()}
        inputs = harmonizer.preprocess(part["image"])
        saliency, logits = signed_saliency(
            harmonizer.backbone, inputs, tf.one_hot(part["label"], classes), training=training
        )
        logits = logits.numpy().astype(np.float64)  # batch statistics in training mode
        smooth = np.eye(classes)[part["label"]] * 0.9 + 0.1 / classes
        log_p = logits - logits.max(1, keepdims=True)
        log_p -= np.log(np.exp(log_p).sum(1, keepdims=True))
        ce += list(-(smooth * log_p).sum(1))
        harm += [float(harmonization_loss(saliency, part["heatmap"], part["token"]))] * len(logits)
        correct += list(logits.argmax(1) == part["label"])
    ce, harm = np.array(ce), np.array(harm)
    return {
        "ce": ce.mean(),
        "harmonization": harm.mean(),
        "loss": (ce + 1e-5 * decay + lam * harm).mean(),
        "accuracy": np.mean(correct),
    }


def test_epoch_logs_are_per_sample_means_on_a_dataset_of_unknown_length():
    arrays = clickme_arrays(20, 16, 3, seed=1)  # batches of 8, 8 and 4
    dataset = as_dataset(arrays, 8).filter(lambda batch: True)
    assert dataset.cardinality() == tf.data.UNKNOWN_CARDINALITY
    harmonizer = Harmonizer(build_model("small_cnn", 3, 16), lambda_harmonization=2.0, lambda_schedule="linear")
    harmonizer.compile(optimizer=keras.optimizers.SGD(0.0))
    history = harmonizer.fit(dataset, epochs=2, verbose=0).history
    np.testing.assert_allclose(history["lambda"], [2.0, 2.0])
    expected = reference_epoch_logs(harmonizer, arrays, 8, 2.0, training=True)
    for name, value in expected.items():
        np.testing.assert_allclose(history[name], [value, value], rtol=2e-5, err_msg=name)
    evaluated = harmonizer.evaluate(dataset, verbose=0, return_dict=True)
    expected = reference_epoch_logs(harmonizer, arrays, 8, 2.0, training=False)
    for name, value in expected.items():
        np.testing.assert_allclose(evaluated[name], value, rtol=2e-5, err_msg=name)


def test_lambda_zero_skips_the_saliency_pass(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the saliency pass ran")

    monkeypatch.setattr(objective_module, "saliency_of", refuse)  # the objective the Harmonizer runs
    dataset = as_dataset(clickme_arrays(8, 16, 3), 4)
    control = Harmonizer(build_model("small_cnn", 3, 16), lambda_harmonization=0.0)
    control.compile(optimizer=keras.optimizers.SGD(0.01))
    history = control.fit(dataset, epochs=1, verbose=0).history
    assert set(history) == {"loss", "ce", "accuracy"}
    harmonized = Harmonizer(build_model("small_cnn", 3, 16), lambda_harmonization=1.0)
    harmonized.compile(optimizer=keras.optimizers.SGD(0.01))
    with pytest.raises(AssertionError, match="saliency pass ran"):
        harmonized.fit(dataset, epochs=1, verbose=0)


@pytest.mark.compat
def test_one_step_follows_the_gradient_of_the_full_objective():
    arrays = clickme_arrays(6, 16, 3, seed=2)
    model = build_model("small_cnn", 3, 16)
    start = [v.numpy() for v in model.trainable_variables]
    harmonizer = Harmonizer(
        model, lambda_harmonization=3.0, lambda_weights=1e-2, label_smoothing=0.2, lambda_schedule="linear"
    )
    harmonizer.compile(optimizer=keras.optimizers.SGD(0.5))
    variables = harmonizer.trainable_variables
    with tf.GradientTape() as tape:
        inputs = harmonizer.preprocess(arrays["image"])
        saliency, logits = signed_saliency(harmonizer.backbone, inputs, tf.one_hot(arrays["label"], 3))
        ce = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.2)(
            tf.one_hot(arrays["label"], 3), logits
        )
        decay = tf.add_n([tf.reduce_sum(tf.square(v)) / 2 for v in variables if "batch_normalization" not in v.path])
        total = ce + 1e-2 * decay + 3.0 * harmonization_loss(saliency, arrays["heatmap"], None)
    gradients = tape.gradient(total, variables)
    harmonizer.fit(as_dataset(arrays, 6), epochs=1, verbose=0)
    for before, gradient, variable in zip(start, gradients, variables):
        np.testing.assert_allclose(
            variable.numpy(), before - 0.5 * gradient.numpy(), rtol=1e-4, atol=1e-6, err_msg=variable.path
        )


def test_lambda_ramps_up_linearly_over_the_first_steps():
    arrays = clickme_arrays(4, 16, 3, seed=4)
    dataset = as_dataset(arrays, 4).repeat(4)  # the same batch four times
    harmonizer = Harmonizer(
        build_model("small_cnn", 3, 16), lambda_harmonization=2.0, lambda_ramp_steps=2, lambda_schedule="linear"
    )
    harmonizer.compile(optimizer=keras.optimizers.SGD(0.0))
    history = harmonizer.fit(dataset, epochs=1, verbose=0).history
    terms = reference_epoch_logs(harmonizer, arrays, 4, 0.0, training=True)
    ramp = np.mean([0.0, 1.0, 2.0, 2.0])  # lambda at optimizer steps 0, 1, 2, 3
    np.testing.assert_allclose(history["loss"][0], terms["loss"] + ramp * terms["harmonization"], rtol=2e-5)


def gate_batch(harmonizer: Harmonizer, seed: int, correct: bool) -> dict:
    """A batch labelled with the network's own training-mode prediction (or the next class)."""
    arrays = clickme_arrays(4, 16, 3, seed=seed)
    predicted = np.argmax(harmonizer.pixel_model(arrays["image"], training=True).numpy(), -1)
    arrays["label"] = (predicted + (0 if correct else 1)) % 3
    return arrays


@pytest.mark.parametrize("jit_compile", [False, True])
def test_adaptive_lambda_waits_until_the_running_accuracy_leaves_chance(tmp_path, jit_compile):
    harmonizer = Harmonizer(build_model("small_cnn", 3, 16), lambda_harmonization=2.0, lambda_ramp_steps=2)
    assert harmonizer.lambda_schedule == "adaptive"
    # frozen weights: every step sees accuracy 1
    harmonizer.compile(optimizer=keras.optimizers.SGD(0.0), jit_compile=jit_compile)
    history = harmonizer.fit(as_dataset(gate_batch(harmonizer, 4, True), 4).repeat(6), epochs=1, verbose=0).history
    # Running accuracy 1/3 -> 0.400, 0.460, 0.514 (steps 0-2): the gate (7/15) opens at step 2,
    # so lambda is 0, 0, 0, then ramps over 2 steps: 1.0 at step 3, 2.0 from step 4.
    np.testing.assert_allclose(history["lambda"][0], np.mean([0, 0, 0, 1.0, 2.0, 2.0]), rtol=1e-6)
    assert int(harmonizer._gate_step.numpy()) == 2
    harmonizer.save_weights(tmp_path / "gate.weights.h5")  # what BackupAndRestore writes
    resumed = Harmonizer(build_model("small_cnn", 3, 16), lambda_harmonization=2.0, lambda_ramp_steps=2)
    resumed.compile(optimizer=keras.optimizers.SGD(0.0))
    resumed.load_weights(tmp_path / "gate.weights.h5")
    assert int(resumed._gate_step.numpy()) == 2
    np.testing.assert_allclose(resumed._gate_accuracy.numpy(), harmonizer._gate_accuracy.numpy())

    wrong = Harmonizer(build_model("small_cnn", 3, 16), lambda_harmonization=2.0)
    wrong.compile(optimizer=keras.optimizers.SGD(0.0))
    history = wrong.fit(as_dataset(gate_batch(wrong, 4, False), 4).repeat(6), epochs=2, verbose=0).history
    assert history["lambda"] == [0.0, 0.0] and int(wrong._gate_step.numpy()) == -1
    assert history["harmonization"][0] > 0  # the term is still measured while it waits


GATE_ON_TWO_REPLICAS = """
    import json, sys
    import harmonization
    import keras
    import numpy as np
    import tensorflow as tf
    sys.path.insert(0, sys.argv[2])
    from builders import as_dataset, clickme_arrays
    from harmonization.training import Harmonizer

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    def build():
        inputs = keras.Input((16, 16, 3))
        x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs / 255.0)
        return keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x)))

    start = build()
    start.save_weights(sys.argv[1])
    arrays = clickme_arrays(8, 16, 3, seed=12)
    predicted = np.argmax(start(arrays["image"]).numpy(), -1)
    arrays["label"] = np.where(np.arange(8) < 4, predicted, (predicted + 1) % 3)  # half right
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    data = as_dataset(arrays, 8).repeat(18).with_options(options)
    gates = {}
    for name, strategy in (("one", tf.distribute.get_strategy()),
                           ("two", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))):
        with strategy.scope():
            model = build()
            model.load_weights(sys.argv[1])
            harmonizer = Harmonizer(model, preprocess=keras.layers.Identity(),
                                    lambda_harmonization=1.0)
            harmonizer.compile(optimizer=keras.optimizers.SGD(0.0))
        history = harmonizer.fit(data, epochs=1, verbose=0).history
        gates[name] = [int(harmonizer._gate_step.numpy()), history["lambda"][0]]
    print(json.dumps(gates))
"""


def test_two_replicas_open_the_gate_at_the_step_one_device_does(tmp_path):
    # Replica 0 sees only right answers, replica 1 only wrong ones: the global accuracy is 0.5,
    # and the running accuracy 1/3 -> 0.5 first reaches 7/15 at step 15 (replica 0 alone: step 2).
    result = run_python(GATE_ON_TWO_REPLICAS, args=(str(tmp_path / "start.weights.h5"), TESTS))
    assert result.returncode == 0, result.stderr[-3000:]
    gates = json.loads(result.stdout.strip().splitlines()[-1])
    assert gates["one"][0] == gates["two"][0] == 15, gates
    assert gates["one"][1] == pytest.approx(gates["two"][1]) == pytest.approx(2 / 18), gates


def test_lambda_schedule_and_saliency_must_be_known_and_survive_the_config():
    with pytest.raises(ValueError, match="lambda_schedule must be one of adaptive, linear, got 'cosine'"):
        Harmonizer(build_model("small_cnn", 3, 16), lambda_schedule="cosine")
    with pytest.raises(ValueError, match="saliency must be one of signed, absolute, got 'sum'"):
        Harmonizer(build_model("small_cnn", 3, 16), saliency="sum")
    config = Harmonizer(build_model("small_cnn", 3, 16), lambda_schedule="linear", saliency="absolute").get_config()
    restored = Harmonizer.from_config(config)
    assert (restored.lambda_schedule, restored.saliency) == ("linear", "absolute")


def test_a_saved_harmonizer_holds_its_format_and_another_format_is_refused():
    config = Harmonizer(build_model("small_cnn", 3, 16), lambda_schedule="linear").get_config()
    assert config["format"] == HARMONIZER_FORMAT == 1
    unnumbered = {key: value for key, value in config.items() if key != "format"}  # as 0.1.0 saved
    assert Harmonizer.from_config(unnumbered).lambda_schedule == "linear"
    older = {key: value for key, value in unnumbered.items() if key != "lambda_schedule"}
    with pytest.raises(
        ValueError,
        match=r"^a saved Harmonizer: no format number and no "
        r"lambda_schedule: written before harmonization 0\.1\.0;",
    ):
        Harmonizer.from_config(older)
    with pytest.raises(
        ValueError,
        match=r"^a saved Harmonizer: format 2, but this version of "
        r"harmonization reads format 1",
    ):
        Harmonizer.from_config({**config, "format": 2})


def test_standard_callbacks_and_saving(tmp_path):
    train, val = as_dataset(clickme_arrays(16, 16, 3, 5), 8), as_dataset(clickme_arrays(8, 16, 3, 6), 8)
    harmonizer = Harmonizer(build_model("small_cnn", 3, 16))
    harmonizer.compile(optimizer=recipe(0.05, epochs=2, steps_per_epoch=2, warmup_epochs=1))
    callbacks = [
        AlignmentCallback(val),
        keras.callbacks.ModelCheckpoint(str(tmp_path / "full.keras")),
        keras.callbacks.ModelCheckpoint(str(tmp_path / "{epoch}.weights.h5"), save_weights_only=True),
        keras.callbacks.CSVLogger(str(tmp_path / "history.csv")),
        keras.callbacks.TensorBoard(str(tmp_path / "tensorboard")),
        keras.callbacks.BackupAndRestore(str(tmp_path / "backup")),
    ]
    harmonizer.fit(train, validation_data=val, epochs=2, callbacks=callbacks, verbose=0)
    with open(tmp_path / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2
    assert {
        "loss",
        "ce",
        "harmonization",
        "accuracy",
        "val_loss",
        "val_ce",
        "val_harmonization",
        "val_accuracy",
        "val_alignment",
        "val_alignment_log_prob",
        "val_gaming_gap",
    } <= set(rows[0])
    assert all(np.isfinite(float(value)) for row in rows for value in row.values())
    assert glob.glob(str(tmp_path / "tensorboard" / "train" / "events.out.tfevents.*"))
    images = clickme_arrays(4, 16, 3, 7)["image"]
    expected = harmonizer.predict(images, verbose=0)
    restored = keras.saving.load_model(tmp_path / "full.keras")
    assert isinstance(restored, Harmonizer)
    np.testing.assert_allclose(restored.predict(images, verbose=0), expected, rtol=1e-5, atol=1e-6)
    reloaded = Harmonizer(build_model("small_cnn", 3, 16))
    reloaded.compile(optimizer=recipe(0.05, epochs=2, steps_per_epoch=2, warmup_epochs=1))
    reloaded.load_weights(tmp_path / "2.weights.h5")
    np.testing.assert_allclose(reloaded.predict(images, verbose=0), expected, rtol=1e-5, atol=1e-6)


def test_saved_pixel_model_loads_without_project_code(tmp_path):
    harmonizer = Harmonizer(build_model("small_cnn", 3, 16))
    path = harmonizer.save_pixel_model(str(tmp_path / "model.keras"))
    assert os.listdir(tmp_path) == ["model.keras"]  # no partial file left behind
    images = clickme_arrays(3, 16, 3, 8)["image"]
    expected = harmonizer.pixel_model(images).numpy()
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert "harmonization" not in json.dumps(loaded.get_config())  # core Keras objects only
    np.testing.assert_allclose(loaded(images).numpy(), expected, rtol=1e-6, atol=1e-6)
    # The attack side loads it under the torch backend, in a process without this project.
    np.save(tmp_path / "images.npy", images)
    code = """
        import sys
        import numpy as np
        import torch
        import keras
        model = keras.saving.load_model(sys.argv[1])
        assert {layer.name for layer in model.layers} >= {"preprocess", "backbone"}
        out = model(torch.from_numpy(np.load(sys.argv[2])), training=False)
        np.save(sys.argv[3], out.detach().cpu().numpy())
        assert not any(name.startswith("harmonization") for name in sys.modules)
    """
    result = run_python(
        code, env={"KERAS_BACKEND": "torch"}, args=(path, str(tmp_path / "images.npy"), str(tmp_path / "torch.npy"))
    )
    assert result.returncode == 0, result.stderr[-3000:]
    np.testing.assert_allclose(np.load(tmp_path / "torch.npy"), expected, rtol=1e-5, atol=1e-5)


def test_mixed_bfloat16_trains_with_float32_losses():
    set_precision(True)
    try:
        harmonizer = Harmonizer(build_model("small_cnn", 3, 16))
    finally:
        set_precision(False)
    harmonizer.compile(optimizer=keras.optimizers.SGD(0.01))
    history = harmonizer.fit(as_dataset(clickme_arrays(8, 16, 3), 8), epochs=1, verbose=0).history
    assert harmonizer.backbone.layers[1].compute_dtype == "bfloat16"
    assert all(np.isfinite(values[0]) for values in history.values())
    assert history["harmonization"][0] > 0


def test_separate_backbone_and_preprocess_are_assembled_into_a_pixel_model():
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    net = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x)))
    harmonizer = Harmonizer(net, preprocess=keras.layers.Rescaling(1 / 255.0))
    assert {layer.name for layer in harmonizer.pixel_model.layers} >= {"preprocess", "backbone"}
    images = clickme_arrays(2, 16, 3)["image"]
    np.testing.assert_allclose(harmonizer.predict(images, verbose=0), net(images / 255.0).numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="pass preprocess="):
        Harmonizer(net)


def test_bilinear_resizing_in_the_network_is_refused():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.UpSampling2D(interpolation="bilinear", name="up")(inputs)
    net = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(x)))
    with pytest.raises(ValueError, match="up.*silently cuts"):
        Harmonizer(net, preprocess=keras.layers.Identity())
    Harmonizer(net, preprocess=keras.layers.Identity(), lambda_harmonization=0.0)


def test_bad_batches_and_arguments_are_refused():
    with pytest.raises(ValueError, match="lambda_harmonization"):
        Harmonizer(build_model("small_cnn", 3, 16), lambda_harmonization=-1)
    harmonizer = Harmonizer(build_model("small_cnn", 3, 16))
    harmonizer.compile(optimizer=keras.optimizers.SGD(0.01))
    arrays = clickme_arrays(4, 16, 3)
    with pytest.raises(ValueError, match="keys image, heatmap, label"):
        harmonizer.fit(
            tf.data.Dataset.from_tensor_slices({"image": arrays["image"], "label": arrays["label"]}).batch(4),
            epochs=1,
            verbose=0,
        )


KILL_AND_RESUME = """
    import os, signal, sys
    sys.path.insert(0, sys.argv[1])
    from builders import as_dataset, clickme_arrays
    import keras
    import numpy as np
    from harmonization.models import build_model
    from harmonization.training import Harmonizer, recipe

    def fit(out, kill_epoch):
        model = build_model("small_cnn", 3, 16)
        model.load_weights(os.path.join(out, "..", "initial.weights.h5"))
        harmonizer = Harmonizer(model, lambda_ramp_steps=3)
        harmonizer.compile(optimizer=recipe(0.05, epochs=3, steps_per_epoch=4, warmup_epochs=1,
                                            decay_epochs=(2,)))

        class Kill(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.epoch = epoch
                with open(os.path.join(out, "epochs.txt"), "a") as handle:
                    handle.write(f"{epoch}\\n")

            def on_train_batch_end(self, batch, logs=None):
                if self.epoch == kill_epoch and batch == 1:
                    os.kill(os.getpid(), signal.SIGKILL)

        backup = keras.callbacks.BackupAndRestore(os.path.join(out, "backup"))
        harmonizer.fit(as_dataset(clickme_arrays(32, 16, 3, seed=9), 8), epochs=3,
                       callbacks=[backup, Kill()], verbose=0)
        weights = [v.numpy() for v in harmonizer.pixel_model.weights]
        np.savez(os.path.join(out, "final.npz"), *weights)

    for job in sys.argv[2:]:  # OUT:KILL_EPOCH, in order
        out, kill_epoch = job.rsplit(":", 1)
        fit(out, int(kill_epoch))
"""


def test_fit_killed_mid_run_resumes_from_the_backup(tmp_path):
    build_model("small_cnn", 3, 16).save_weights(tmp_path / "initial.weights.h5")
    runs = {name: tmp_path / name for name in ("straight", "killed")}
    for directory in runs.values():
        directory.mkdir()

    def run(*jobs):
        return run_python(KILL_AND_RESUME, args=(TESTS, *(f"{runs[name]}:{kill}" for name, kill in jobs)))

    # one interpreter runs the uninterrupted fit, then the one it kills; a fresh one resumes
    killed = run(("straight", -1), ("killed", 1))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert (runs["straight"] / "final.npz").exists() and not (runs["killed"] / "final.npz").exists()
    resumed = run(("killed", -1))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (runs["killed"] / "epochs.txt").read_text().split() == ["0", "1", "1", "2"]
    expected, actual = np.load(runs["straight"] / "final.npz"), np.load(runs["killed"] / "final.npz")
    assert len(expected.files) == len(actual.files) == 24  # batch-norm statistics included
    for name in expected.files:
        np.testing.assert_allclose(actual[name], expected[name], rtol=1e-6, atol=1e-7)


def test_recipe_schedule_follows_warmup_and_step_decay():
    optimizer = recipe(0.4, epochs=90, steps_per_epoch=10)
    schedule = keras.optimizers.schedules.deserialize(optimizer.get_config()["learning_rate"])
    assert isinstance(schedule, WarmupStepDecay)
    expected = {
        0: 0.4 / 50,
        24: 0.4 * 25 / 50,
        49: 0.4,
        299: 0.4,
        300: 0.04,
        599: 0.04,
        600: 0.004,
        800: 0.0004,
        899: 0.0004,
    }
    for step, value in expected.items():
        np.testing.assert_allclose(float(schedule(step)), value, rtol=1e-6, err_msg=str(step))
    assert optimizer.nesterov and optimizer.momentum == 0.9
    short = recipe(0.1, epochs=6, steps_per_epoch=5, warmup_epochs=1, decay_epochs=())
    short_schedule = keras.optimizers.schedules.deserialize(short.get_config()["learning_rate"])
    assert [round(float(short_schedule(s)), 6) for s in (0, 4, 5, 29)] == [0.02, 0.1, 0.1, 0.1]
    assert WarmupStepDecay.from_config(schedule.get_config()).get_config() == schedule.get_config()
    with pytest.raises(ValueError, match="warmup_epochs"):
        recipe(0.1, epochs=2, steps_per_epoch=5, warmup_epochs=5)
    adam = recipe(1e-3, epochs=6, steps_per_epoch=5, warmup_epochs=1, decay_epochs=(), optimizer="adam")
    assert isinstance(adam, keras.optimizers.Adam)
    adam_schedule = keras.optimizers.schedules.deserialize(adam.get_config()["learning_rate"])
    assert [round(float(adam_schedule(s)), 6) for s in (0, 4, 5)] == [0.0002, 0.001, 0.001]
    with pytest.raises(ValueError, match="optimizer"):
        recipe(0.1, epochs=2, steps_per_epoch=5, warmup_epochs=0, optimizer="rmsprop")


def test_mixup_mixes_images_heatmaps_and_labels_with_one_weight():
    n = 6
    arrays = {
        "image": np.repeat(10.0 * np.arange(n), 4 * 4 * 3).reshape(n, 4, 4, 3).astype("float32"),
        "heatmap": np.repeat(np.arange(n, dtype="float32"), 16).reshape(n, 4, 4, 1),
        "label": np.arange(n, dtype="int64"),
        "token": np.array([1, 1, 1, 1, 0, 1], "float32"),
    }
    from harmonization.inputs.transforms import mixup, mixup_draws

    def mixed_batch(seed: int) -> dict:
        return mixup(arrays, n, *mixup_draws(np.random.default_rng(seed), n, alpha=0.4))

    mixed = mixed_batch(3)
    heat = mixed["heatmap"][:, 0, 0, 0]
    labels = mixed["label"]
    np.testing.assert_allclose(mixed["image"][:, 0, 0, 0], 10 * heat, rtol=1e-5)
    np.testing.assert_allclose(labels @ np.arange(n), heat, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(labels.sum(1), 1.0, rtol=1e-6)
    assert ((labels > 1e-3) & (labels < 1 - 1e-3)).any()
    # sample 4 has no human map: every mix that involves it has none either
    np.testing.assert_array_equal(mixed["token"], (labels[:, 4] < 1e-7).astype("float32"))
    np.testing.assert_array_equal(mixed_batch(3)["label"], labels)


WAITS_FOR_THE_CLASSIFIER = """
    import json, sys
    import harmonization
    import keras
    import tensorflow as tf
    from harmonization.data import load_clickme
    from harmonization.data.testbeds import write_testbed
    from harmonization.models import build_model
    from harmonization.training import Harmonizer, recipe

    tf.config.experimental.enable_op_determinism()  # the same outcome on every run
    info = write_testbed("edges", sys.argv[1], seed=0, train_size=1000, val_size=8, conflict_size=8,
                         stimuli_per_class=1)
    accuracy = {}
    for schedule in ("linear", "adaptive"):
        keras.utils.set_random_seed(0)
        data = load_clickme(info["train"], split="train", batch_size=64, image_size=32, num_classes=6,
                            seed=0, crop_area=(1.0, 1.0))
        steps = int(data.cardinality())
        harmonizer = Harmonizer(build_model("small_cnn_plain", 6, 32), lambda_harmonization=0.5,
                                lambda_schedule=schedule, lambda_ramp_steps=steps)
        harmonizer.compile(optimizer=recipe(1e-3, 4, steps, 1, (), optimizer="adam"))
        accuracy[schedule] = harmonizer.fit(data, epochs=4, verbose=0).history["accuracy"]
    print(json.dumps(accuracy))
"""


def test_a_run_that_collapses_with_the_one_epoch_ramp_trains_with_the_adaptive_default(tmp_path):
    # The "edges" test bed's faint objects take the plain network about two epochs to leave
    # chance; the README's recipe with the old one-epoch linear ramp then stays at chance (ce at
    # ln 6), while the default waits for the running accuracy. With deterministic ops the outcome
    # is the same on every run; on training seeds 0 and 1 (docs/harmonizer-schedule.md) linear
    # stayed at 0.15-0.19 per epoch and adaptive reached 0.45 in epoch 4.
    result = run_python(WAITS_FOR_THE_CLASSIFIER, args=(str(tmp_path / "edges"),), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    accuracy = json.loads(result.stdout.strip().splitlines()[-1])
    threshold = chance_threshold(6)  # 1/3: chance + 0.2 * (1 - chance)
    assert max(accuracy["linear"]) < threshold, accuracy
    assert accuracy["adaptive"][-1] > threshold + 0.05, accuracy
