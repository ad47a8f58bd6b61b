"""Import discipline, each checked in a fresh interpreter (trap 1 of the stack notes)."""
import subprocess
import sys

import pytest


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)


def test_metrics_loads_neither_tensorflow_nor_torch():
    result = run_python(
        "import sys, harmonization.metrics\n"
        "assert 'tensorflow' not in sys.modules and 'torch' not in sys.modules, sorted(sys.modules)"
    )
    assert result.returncode == 0, result.stderr


def test_attacks_torch_never_loads_tensorflow():
    result = run_python(
        "import sys, attacks_torch, attacks_torch.attacks, attacks_torch.search, attacks_torch.models\n"
        "assert 'tensorflow' not in sys.modules"
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "order",
    [
        "import torch, timm, torchvision\nimport tensorflow as tf",
        "import harmonization\nimport attacks_torch\nimport tensorflow as tf\nimport torch, timm",
    ],
    ids=["torch-first", "project-order"],
)
def test_torch_and_tensorflow_in_one_process_do_not_crash(order):
    result = run_python(
        order + "\n"
        "import torch, tensorflow as tf\n"
        "m = torch.nn.Linear(2, 2); opt = torch.optim.SGD(m.parameters(), lr=0.1)\n"
        "m(torch.ones(1, 2)).sum().backward(); opt.step()\n"
        "print(float(tf.reduce_sum(tf.ones(3))))"
    )
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr[-2000:]}"
    assert "3.0" in result.stdout
