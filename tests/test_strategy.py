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

    def build():
        inputs = keras.Input((16, 16, 3))
        x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
        x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D()(x)
        x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
        x = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x))
        return keras.Model(inputs, keras.layers.Activation("log_softmax")(x))

    def train(strategy, initial, steps=3):
        with strategy.scope():
            model = build()
            model.load_weights(initial)
            harmonizer = Harmonizer(model, preprocess=keras.layers.Identity(),  # the full weight
                                    lambda_harmonization=2.0, lambda_weights=1e-3,  # from step 0
                                    lambda_schedule="linear")
            harmonizer.compile(optimizer=recipe(0.2, epochs=1, steps_per_epoch=steps,
                                                warmup_epochs=0))
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
    monkeypatch.setattr(distribute.glob, "glob",
                        lambda pattern: ["/dev/accel0"] if "accel" in pattern else [])
    assert distribute._tpu_name(None) == "local"


def test_worker_count_reads_tf_config():
    assert worker_count("") == 0
    spec = {"cluster": {"chief": ["a:1"], "worker": ["b:1", "c:1"]}, "task": {"type": "chief", "index": 0}}
    assert worker_count(json.dumps(spec)) == 3
    assert worker_count(json.dumps({"cluster": {"worker": ["b:1"]}})) == 1
    with pytest.raises(ValueError, match="TF_CONFIG"):
        worker_count("{not json")


def test_two_replicas_match_one_device(tmp_path):
    code = script("""
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        start = build()
        start.save_weights(sys.argv[1])
        start = [v.numpy() for v in start.weights]
        two, two_logs = train(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]), sys.argv[1])
        one, one_logs = train(tf.distribute.get_strategy(), sys.argv[1])
        print(json.dumps({
            "update": max(float(np.linalg.norm(a - b) / np.linalg.norm(b - s))
                          for a, b, s in zip(two, one, start)),
            "logs": max(abs(two_logs[k][0] - one_logs[k][0]) / abs(one_logs[k][0]) for k in one_logs),
        }))
    """)
    result = run_python(code, args=(str(tmp_path / "initial.weights.h5"),))
    assert result.returncode == 0, result.stderr[-3000:]
    difference = json.loads(result.stdout.strip().splitlines()[-1])
    assert difference["update"] < 1e-2, difference  # the steps agree to float32 rounding (see below)
    assert difference["logs"] < 1e-4, difference


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_on_localhost_train_like_one_device(tmp_path):
    code = script("""
        from harmonization.training import strategy
        chosen = strategy()  # first TensorFlow operation of the program, as collectives need
        multi_worker = isinstance(chosen, tf.distribute.MultiWorkerMirroredStrategy)
        assert multi_worker == ("TF_CONFIG" in os.environ), type(chosen)
        weights, history = train(chosen, sys.argv[1])
        np.savez(sys.argv[2], *weights)
        print(json.dumps(history))
    """)
    initial = str(tmp_path / "initial.weights.h5")
    result = run_python(script("""
        model = build()
        model.save_weights(sys.argv[1])
        np.savez(sys.argv[2], *[v.numpy() for v in model.weights])
    """), args=(initial, str(tmp_path / "initial.npz")))
    assert result.returncode == 0, result.stderr[-3000:]
    cluster = {"worker": [f"localhost:{port}" for port in _free_ports(2)]}
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
                [sys.executable, "-c", code, initial, str(tmp_path / f"{name}.npz")], env=env,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        outputs = {name: run.communicate(timeout=400) for name, run in runs.items()}
    finally:
        for run in runs.values():
            if run.poll() is None:
                run.kill()
    for name, run in runs.items():
        assert run.returncode == 0, f"{name}: {outputs[name][1][-3000:]}"
    weights = {name: np.load(tmp_path / f"{name}.npz") for name in runs}
    start = np.load(tmp_path / "initial.npz")
    assert weights["single"].files == start.files and len(start.files) == 6
    for name in start.files:
        np.testing.assert_array_equal(weights["worker0"][name], weights["worker1"][name])
        single = weights["single"][name]
        assert not np.allclose(single, start[name]), f"{name} did not train"
        # The steps agree to float32 rounding: all-reduce sums in another order than one device
        # does, and the harmonization term's second derivative amplifies that over three steps at
        # lr 0.2 (1e-4 of the update on CI's CPU); a wrong loss scale is off by a third or more.
        update = np.linalg.norm(single - start[name])
        assert np.linalg.norm(weights["worker0"][name] - single) < 1e-2 * update, name
    logs = {name: json.loads(out.strip().splitlines()[-1]) for name, (out, _) in outputs.items()}
    assert logs["worker0"] == logs["worker1"]
    for key, value in logs["single"].items():
        np.testing.assert_allclose(logs["worker0"][key], value, rtol=1e-4)
