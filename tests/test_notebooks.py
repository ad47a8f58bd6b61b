"""The Colab notebooks: committed without outputs, and both run end to end in small mode.

Each notebook runs in a fresh kernel of this interpreter (a kernelspec written to a temporary
folder names ``sys.executable``), with ``HARMONIZATION_SMALL=1`` and its outputs in a temporary
folder; the tests check the artefacts a user gets from it.
"""

import csv
import json
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
TRAINING = NOTEBOOKS / "train_harmonizer_tpu.ipynb"
ATTACKS = NOTEBOOKS / "attack_models.ipynb"
KERNEL = "harmonization-test-python"
TIMEOUT_S = 600  # per cell; each notebook takes about a minute on an idle 2-core machine


@pytest.fixture
def kernel(tmp_path_factory, monkeypatch):
    """A kernelspec that starts this interpreter, found through JUPYTER_PATH."""
    data = tmp_path_factory.mktemp("jupyter")
    spec = data / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": KERNEL, "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(data))
    assert KernelSpecManager().get_kernel_spec(KERNEL).argv[0] == sys.executable
    return KERNEL


def execute(path: Path, workdir: Path, kernel_name: str, then: str | None = None) -> nbformat.NotebookNode:
    """Run every cell of the notebook at ``path`` in ``workdir``, then the code ``then`` if given, in
    the same kernel; returns the executed notebook."""
    notebook = nbformat.read(path, as_version=4)
    if then is not None:
        notebook.cells.append(nbformat.v4.new_code_cell(then))
    client = NotebookClient(
        notebook, timeout=TIMEOUT_S, kernel_name=kernel_name, resources={"metadata": {"path": str(workdir)}}
    )
    client.execute()
    return notebook


def small_mode(monkeypatch, out: Path) -> None:
    monkeypatch.setenv("HARMONIZATION_SMALL", "1")
    monkeypatch.setenv("HARMONIZATION_NOTEBOOK_OUT", str(out))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend, so figures are displayed


def displayed_images(notebook: nbformat.NotebookNode) -> int:
    return sum(
        "image/png" in output.get("data", {})
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )


@pytest.mark.parametrize("path", [TRAINING, ATTACKS], ids=lambda p: p.stem)
def test_committed_notebooks_have_no_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code, f"{path.name} has no code cell"
    for index, cell in enumerate(code):
        assert cell.outputs == [], f"{path.name}: code cell {index} has outputs"
        assert cell.execution_count is None, f"{path.name}: code cell {index} has an execution count"
    assert "HARMONIZATION_SMALL" in code[0].source


def test_training_notebook_trains_evaluates_and_saves_in_small_mode(tmp_path, monkeypatch, kernel):
    out = tmp_path / "out"
    small_mode(monkeypatch, out)
    notebook = execute(TRAINING, tmp_path, kernel)

    with zipfile.ZipFile(out / "model.keras") as archive:  # a Keras archive of the pixel model
        assert {"config.json", "metadata.json", "model.weights.h5"} <= set(archive.namelist())
        config = json.loads(archive.read("config.json"))
    assert config["config"]["name"] == "small_cnn"
    assert config["config"]["layers"][0]["config"]["batch_shape"] == [None, 32, 32, 3]
    with open(out / "history.csv", newline="") as handle:
        epochs = list(csv.DictReader(handle))
    assert [int(row["epoch"]) for row in epochs] == [0, 1]
    assert {"loss", "ce", "harmonization", "accuracy", "val_loss", "val_harmonization"} <= set(epochs[0])
    summary = json.loads((out / "summary.json").read_text())  # written by harmonization.training.run
    assert summary["settings"]["model"] == "small_cnn" and summary["settings"]["epochs"] == 2
    assert summary["validation"]["count"] == 64 and summary["conflict"]["count"] == 64
    assert 0.0 <= summary["validation"]["accuracy"] <= 1.0
    assert -1.0 <= summary["validation"]["spearman"]["mean"] <= 1.0
    assert isinstance(summary["validation"]["near_chance"], bool)
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    assert not (out / "backup").exists()  # removed once the run is complete
    assert displayed_images(notebook) >= 1  # the training curves


def test_attack_notebook_attacks_and_draws_the_figures_in_small_mode(tmp_path, monkeypatch, kernel):
    out = tmp_path / "out"
    small_mode(monkeypatch, out)
    backend = "import sys, keras\nprint(keras.backend.backend(), 'tensorflow' in sys.modules)"
    notebook = execute(ATTACKS, tmp_path, kernel, then=backend)
    assert notebook.cells[-1].outputs[0].text.split() == ["torch", "False"]  # Keras on torch, and no TensorFlow

    with open(out / "attacks" / "summary.csv", newline="") as handle:
        summary = {row["model"]: row for row in csv.DictReader(handle)}
    assert set(summary) == {"test_resnet", "test_vit", "harmonized_small_cnn"}
    assert {row["status"] for row in summary.values()} == {"done"}
    assert summary["harmonized_small_cnn"]["spec"].endswith("model.keras")
    assert Path(summary["harmonized_small_cnn"]["spec"]).is_file()
    report = out / "report"
    figures = ("accuracy_vs_tolerance", "accuracy_vs_alignment", "tolerance_vs_alignment", "panels")
    for name in figures:
        assert (report / f"l2_pgd_{name}.png").stat().st_size > 0
    assert "harmonized_small_cnn" in (report / "report.md").read_text()
    assert displayed_images(notebook) >= len(figures)


def test_attack_notebook_in_full_mode_asks_for_the_stimuli(tmp_path, monkeypatch, kernel):
    monkeypatch.delenv("HARMONIZATION_SMALL", raising=False)
    monkeypatch.setenv("HARMONIZATION_NOTEBOOK_OUT", str(tmp_path / "out"))
    with pytest.raises(CellExecutionError, match="STIMULI"):
        execute(ATTACKS, tmp_path, kernel)
