"""Import discipline, each checked in a fresh interpreter (docs/traps.md, "Import order").

Loading triton after TensorFlow segfaults the process (tensorflow#124205); the library must survive
any order in which a user imports TensorFlow, Keras, torch, timm and the two packages.
"""

import subprocess
import sys

import pytest
from builders import python_path


def run_python(code: str) -> subprocess.CompletedProcess:
    """``code`` in an interpreter that inherits nothing but PYTHONPATH (tests/site: a fast exit)."""
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=600,
        env={"TF_CPP_MIN_LOG_LEVEL": "2", "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": python_path()},
    )


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


# What a process that uses both sides does after its imports: timm and a torch optimizer step (they
# are what load triton), and a TensorFlow op.
WORKLOAD = """
import tensorflow as tf, timm, torch
model = torch.nn.Linear(2, 2)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
model(torch.ones(1, 2)).sum().backward()
optimizer.step()
print(float(tf.reduce_sum(tf.ones(3))))
"""

ORDERS = {
    "tensorflow-first": "import tensorflow as tf\nimport harmonization.data\nimport attacks_torch",
    "keras-first": "import keras\nimport harmonization.models\nimport attacks_torch.models",
    "tensorflow-then-torch-then-project": "import tensorflow\nimport torch\nimport harmonization\nimport attacks_torch",
    "torch-first": "import torch, timm, torchvision\nimport tensorflow as tf\nimport harmonization.training",
    "project-first": "import harmonization\nimport attacks_torch\nimport tensorflow as tf",
    "attacks-first": "import attacks_torch\nimport tensorflow as tf\nimport harmonization.data",
}
# triton's entry in sys.modules once the workload ran: None when marked unavailable
TRITON = "import sys\nprint(sys.modules.get('triton', 'absent'))"


@pytest.fixture(scope="module")
def orders() -> dict:
    """{order: its interpreter's result}: the imports in that order, the workload, then TRITON."""
    return {name: run_python(order + "\n" + WORKLOAD + TRITON) for name, order in ORDERS.items()}


@pytest.mark.parametrize("order", ORDERS)
def test_any_import_order_of_tensorflow_keras_torch_and_the_project_runs(orders, order):
    result = orders[order]
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr[-2000:]}"
    assert result.stdout.strip().splitlines()[-2] == "3.0"


def test_triton_is_kept_out_only_when_tensorflow_came_first(orders):
    # TensorFlow before harmonization: triton marked unavailable, and timm and torch's optimizer
    # step then run without it; harmonization before TensorFlow: triton loaded, so torch has it
    after_tf = orders["tensorflow-first"]
    before_tf = orders["project-first"]
    assert after_tf.returncode == 0 and after_tf.stdout.strip().splitlines()[-1] == "None", after_tf.stderr[-2000:]
    assert before_tf.returncode == 0 and before_tf.stdout.strip().splitlines()[-1].startswith("<module 'triton'"), (
        before_tf.stderr[-2000:]
    )
