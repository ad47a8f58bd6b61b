"""Distribution: the strategy choice, and replicas / workers that train like one device."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from builders import run_python
import tensorflow as tf

from harmonization.training import distribute
from harmonization.training.distribute import worker_count

TESTS = os.path.dirname(os.path.abspath(__file__))

# Shared by the subprocesses: the same initial weights and batches for every run. The network has
# no batch norm: Keras batch norm uses each replica's own batch statistics, so with it replicas
# agree with one device only up to those statistics; the loss scaling is what is tested here.
SETUP = """
    import json, os, sys
    sys.path.insert(0, {tests!r})
    from builders import as_dataset, clickme_arrays
    import keras
    import numpy as np
    import tensorflow as tf
    from harmonization.training import Harmonizer, recipe

    LR, DECAY = 0.2, 0.05

    def build():
        inputs = keras.Input((16, 16, 3))
        x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
        x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D()(x)
        x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
        x = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x))
        return keras.Model(inputs, keras.layers.Activation("log_softmax")(x))

    def train(strategy, initial, steps=3, lambda_harmonization=2.0, lambda_weights=1e-3, sgd=False):
        with strategy.scope():
            model = build()
            model.load_weights(initial)
            harmonizer = Harmonizer(model, preprocess=keras.layers.Identity(),  # the full weight
                                    lambda_harmonization=lambda_harmonization,  # from step 0
                                    lambda_weights=lambda_weights, lambda_schedule="linear")
            harmonizer.compile(optimizer=keras.optimizers.SGD(LR) if sgd else recipe(
                LR, epochs=1, steps_per_epoch=steps, warmup_epochs=0))
        data = as_dataset(clickme_arrays(8 * steps, 16, 3, seed=11), 8)
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        history = harmonizer.fit(data.with_options(options), epochs=1, verbose=0).history
        return [v.numpy() for v in harmonizer.pixel_model.weights], history
"""


def script(body: str) -> str:
    return textwrap.dedent(SETUP.format(tests=TESTS)) + textwrap.dedent(body)


def test_default_strategy_on_a_plain_machine(monkeypatch):
    for name in ("TF_CONFIG", "TPU_NAME", "COLAB_TPU_ADDR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(distribute.glob, "glob", lambda pattern: [])
    assert distribute.strategy() is tf.distribute.get_strategy()


def test_tpu_is_looked_for_only_where_the_environment_names_one(monkeypatch):
    for name in ("TPU_NAME", "COLAB_TPU_ADDR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(distribute.glob, "glob", lambda pattern: [])
    assert distribute._tpu_name(None) is None
    assert distribute._tpu_name("my-tpu") == "my-tpu"
    monkeypatch.setenv("COLAB_TPU_ADDR", "10.0.0.2:8470")
    assert distribute._tpu_name(None) == "grpc://10.0.0.2:8470"
    monkeypatch.setenv("TPU_NAME", "pod")
    assert distribute._tpu_name(None) == "pod"
    monkeypatch.delenv("TPU_NAME")
    monkeypatch.delenv("COLAB_TPU_ADDR")
    monkeypatch.setattr(distribute.glob, "glob", lambda pattern: ["/dev/accel0"] if "accel" in pattern else [])
    assert distribute._tpu_name(None) == "local"


def test_worker_count_reads_tf_config():
    assert worker_count("") == 0
    spec = {"cluster": {"chief": ["a:1"], "worker": ["b:1", "c:1"]}, "task": {"type": "chief", "index": 0}}
    assert worker_count(json.dumps(spec)) == 3
    assert worker_count(json.dumps({"cluster": {"worker": ["b:1"]}})) == 1
    with pytest.raises(ValueError, match="TF_CONFIG"):
        worker_count("{not json")


@pytest.fixture(scope="module")
def replicas(tmp_path_factory) -> dict:
    """Two logical CPUs under MirroredStrategy against one device, from the same weights: the full
    objective over three steps, and the weight-decay term alone over one plain SGD step."""
    code = script("""
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        start = build()
        start.save_weights(sys.argv[1])
        start = np.concatenate([v.numpy().ravel() for v in start.weights])
        flat = lambda weights: np.concatenate([w.ravel() for w in weights])
        strategies = {"two": tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]),
                      "one": tf.distribute.get_strategy()}
        two, two_logs = train(strategies["two"], sys.argv[1])
        one, one_logs = train(strategies["one"], sys.argv[1])
        # the decay's own step: with and without it, cross-entropy only, one SGD step
        decay_step = {name: (flat(train(chosen, sys.argv[1], 1, 0.0, DECAY, sgd=True)[0])
                             - flat(train(chosen, sys.argv[1], 1, 0.0, 0.0, sgd=True)[0])).tolist()
                      for name, chosen in strategies.items()}
        print(json.dumps({
            "update": float(np.linalg.norm(flat(two) - flat(one)) / np.linalg.norm(flat(one) - start)),
            "logs": [abs(two_logs[k][0] - one_logs[k][0]) / abs(one_logs[k][0]) for k in one_logs],
            "start": start.tolist(), "decay_step": decay_step,
        }))
    """)
    initial = str(tmp_path_factory.mktemp("replicas") / "initial.weights.h5")
    result = run_python(code, args=(initial,))
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_two_replicas_match_one_device(replicas):
    # The steps agree to float32 rounding: all-reduce sums in another order than one device does,
    # and the harmonization term's second derivative amplifies that over three steps at lr 0.2 to
    # 1e-6 (this machine) to 1e-4 (CI's CPU) of the update. 1e-3 leaves 10x for other machines,
    # while a loss scale off by 1 / replicas or a term mis-scaled by 1% of the step is above it.
    assert replicas["update"] < 1e-3, replicas["update"]
    logs = np.array(replicas["logs"], dtype=float)  # NaN fails: Python's max would skip it
    assert np.max(logs) < 1e-4, logs


def test_weight_decay_term_is_scaled_once_under_replicas(replicas):
    """lambda_weights * sum(w^2) / 2 moves every weight (biases too) by -lr * lambda_weights * w in
    one SGD step, whatever the replica count: a decay summed over the replicas, or divided once
    too often, moves them by 2x or 0.5x."""
    expected = -0.2 * 0.05 * np.array(replicas["start"])  # LR, DECAY of the script
    for name, step in replicas["decay_step"].items():
        # each side is a difference of two trainings: float32 rounding of the weights (~1e-7 of w)
        # against a step of 1e-2 of w leaves ~1e-5 (3.6e-6 measured); a 1% mis-scale gives 1e-2
        error = np.linalg.norm(np.array(step) - expected) / np.linalg.norm(expected)
        assert error < 1e-3, (name, error)


def _reserved_port() -> int:
    """A port that no other program is handed until a worker binds it.

    A listening socket accepts one connection and closes its side first, which leaves the port
    in TIME_WAIT for a minute: the kernel gives it to no ``bind(port 0)`` meanwhile, while a server
    that sets SO_REUSEADDR (gRPC, which TensorFlow's workers use, does) can still bind it. A port
    merely freed after ``bind(0)`` can be taken by anyone before the workers start.
    """
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("localhost", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        with socket.create_connection(("localhost", port)):
            accepted, _ = listener.accept()
            accepted.close()
    return port


def test_two_workers_on_localhost_train_like_one_device(tmp_path):
    # each process starts from the same seeded weights (checked below) and writes PREFIX.start.npz
    # and, after training, PREFIX.npz
    code = script("""
        from harmonization.training import strategy
        chosen = strategy()  # first TensorFlow operation of the program, as collectives need
        multi_worker = isinstance(chosen, tf.distribute.MultiWorkerMirroredStrategy)
        assert multi_worker == ("TF_CONFIG" in os.environ), type(chosen)
        keras.utils.set_random_seed(0)
        start = build()
        start.save_weights(sys.argv[1] + ".initial.weights.h5")
        np.savez(sys.argv[1] + ".start.npz", *[v.numpy() for v in start.weights])
        weights, history = train(chosen, sys.argv[1] + ".initial.weights.h5")
        np.savez(sys.argv[1] + ".npz", *weights)
        print(json.dumps(history))
    """)
    cluster = {"worker": [f"localhost:{_reserved_port()}" for _ in range(2)]}
    base_env = {key: value for key, value in os.environ.items() if key != "TF_CONFIG"}
    base_env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    envs = {"single": base_env}
    for index in range(2):
        config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        envs[f"worker{index}"] = {**base_env, "TF_CONFIG": json.dumps(config)}
    runs = {}
    try:
        for name, env in envs.items():
            runs[name] = subprocess.Popen(
                [sys.executable, "-c", code, str(tmp_path / name)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        outputs = {name: run.communicate(timeout=400) for name, run in runs.items()}
    finally:
        for run in runs.values():
            if run.poll() is None:
                run.kill()
    for name, run in runs.items():
        assert run.returncode == 0, f"{name}: {outputs[name][1][-3000:]}"
    weights = {name: np.load(tmp_path / f"{name}.npz") for name in runs}
    start = np.load(tmp_path / "single.start.npz")
    assert weights["single"].files == start.files and len(start.files) == 6
    for name in ("worker0", "worker1"):
        other = np.load(tmp_path / f"{name}.start.npz")
        assert all(np.array_equal(other[key], start[key]) for key in start.files), f"{name} started elsewhere"
    for name in start.files:
        np.testing.assert_array_equal(weights["worker0"][name], weights["worker1"][name])
        single = weights["single"][name]
        assert not np.allclose(single, start[name]), f"{name} did not train"
        # The steps agree to float32 rounding: all-reduce sums in another order than one device
        # does, and the harmonization term's second derivative amplifies that over three steps at
        # lr 0.2 (1e-4 of the update on CI's CPU); 1e-3 leaves 10x for other machines, and a term
        # mis-scaled by 1% of a step, or a wrong loss scale (off by half), is above it.
        update = np.linalg.norm(single - start[name])
        assert np.linalg.norm(weights["worker0"][name] - single) < 1e-3 * update, name
    logs = {name: json.loads(out.strip().splitlines()[-1]) for name, (out, _) in outputs.items()}
    assert logs["worker0"] == logs["worker1"]
    for key, value in logs["single"].items():
        np.testing.assert_allclose(logs["worker0"][key], value, rtol=1e-4)
