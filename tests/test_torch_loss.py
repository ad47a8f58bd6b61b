"""harmonizer_loss in a plain PyTorch loop: the Keras Harmonizer's terms and gradients, and the
same gradients on two torchrun processes (gloo) as on one."""

import json
import os
import subprocess
import sys

import pytest

from builders import python_path, run_python

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
TORCH = {"KERAS_BACKEND": "torch", "OMP_NUM_THREADS": "1"}

EQUAL = """
    import json, sys
    import harmonization
    import keras
    import torch
    sys.path.insert(0, sys.argv[1])
    from builders import clickme_arrays, timm_test_resnet
    from harmonization.torch_loss import harmonizer_loss
    from harmonization.training import Harmonizer

    model, network = timm_test_resnet()  # every residual branch open
    arrays = clickme_arrays(4, 32, 4, seed=1)
    arrays["token"][1] = 0.0
    batch = {k: torch.from_numpy(v) for k, v in arrays.items()}
    options = dict(lambda_harmonization=3.0, lambda_weights=1e-2, label_smoothing=0.1, levels=3)
    harmonizer = Harmonizer(model, lambda_schedule="linear", **options)
    harmonizer.compile(optimizer=keras.optimizers.SGD(0.0))  # the schedule reads its step
    keras_terms = harmonizer.compute_terms(
        batch["image"], batch["heatmap"], torch.nn.functional.one_hot(batch["label"], 4).float(),
        batch["token"], training=True, harmonize=True)
    params = [v.value for v in harmonizer.trainable_variables]  # the torch parameters themselves
    keras_grads = torch.autograd.grad(keras_terms["loss"], params)
    torch_terms = harmonizer_loss(network, batch["image"], batch["heatmap"], batch["label"], batch["token"],
                                  **options)
    torch_grads = torch.autograd.grad(torch_terms["loss"], params, retain_graph=True)
    unit = torch.autograd.grad(torch_terms["harmonization"], params, allow_unused=True,
                               materialize_grads=True)
    out = {name: [float(keras_terms[name]), float(torch_terms[name])]
           for name in ("loss", "ce", "harmonization")}
    out["weight_decay"] = [float((keras_terms["loss"] - keras_terms["ce"] - 3.0 * keras_terms["harmonization"])
                                 / 1e-2), float(torch_terms["weight_decay"])]
    worst = lambda values: float(torch.stack(list(values)).max())  # NaN-aware, unlike Python's max
    out["grad_max"] = worst(g.abs().max() for g in keras_grads)
    out["grad_diff"] = worst((a - b).abs().max() for a, b in zip(keras_grads, torch_grads))
    out["term_grad_max"] = worst(g.abs().max() for g in unit)
    print(json.dumps(out))
"""


def test_the_pytorch_loss_is_the_harmonizers_objective():
    result = run_python(EQUAL, env=TORCH, args=(TESTS,))
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    for name in ("loss", "ce", "harmonization", "weight_decay"):
        keras_value, torch_value = out[name]
        assert torch_value == pytest.approx(keras_value, rel=1e-5, abs=1e-6), name
    assert out["harmonization"][0] > 0 and out["term_grad_max"] > 0  # the second-order path is there
    assert out["grad_diff"] <= 1e-5 * max(out["grad_max"], 1.0)


def test_two_torchrun_processes_give_the_gradients_of_the_global_batch(tmp_path):
    """examples/train_timm_ddp.py's step on 2 gloo processes vs one process with the global batch;
    neither loads TensorFlow (the ClickMe reader and the loss need none)."""
    env = {**os.environ, **TORCH, "PYTHONPATH": python_path(ROOT), "HF_HUB_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    script = os.path.join(ROOT, "examples", "train_timm_ddp.py")
    common = ["--synthetic", "--steps", "1", "--image-size", "32", "--lr", "0.1"]
    runs = {}
    for procs, batch in ((2, 4), (1, 8)):
        out = tmp_path / f"p{procs}"
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={procs}",
            script,
            "--out",
            str(out),
            "--batch-size",
            str(batch),
            *common,
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
        assert result.returncode == 0, result.stderr[-3000:]
        runs[procs] = json.loads((out / "step.json").read_text())
    assert not runs[1]["tensorflow_loaded"] and not runs[2]["tensorflow_loaded"]
    assert runs[2]["loss"] == pytest.approx(runs[1]["loss"], rel=1e-5)
    assert runs[2]["gradients"].keys() == runs[1]["gradients"].keys()
    scale = max(abs(v) for values in runs[1]["gradients"].values() for v in values)
    for name, values in runs[1]["gradients"].items():
        assert runs[2]["gradients"][name] == pytest.approx(values, abs=1e-5 * scale), name
