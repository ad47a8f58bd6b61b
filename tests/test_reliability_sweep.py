"""Issue #22, attack side: a sweep records what the chance check needs, also after an interrupted run;
it files rows under the hash of what it loaded; eps is NaN where the contract says so."""

import csv
import json
import math
import shutil

import numpy as np
import pytest
import torch
from builders import FAST_SWEEP as FAST
from builders import SWEEP_MODEL as MODEL
from builders import make_checkpoint, make_stimuli

from attacks_torch.stimuli import load_stimuli
from attacks_torch.sweep import ModelSpec, SweepConfig, SweepError, resume, run_sweep


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    directory = tmp_path_factory.mktemp("assets")
    checkpoint = make_checkpoint(directory)
    return {"directory": directory, "checkpoint": checkpoint, "stimuli": make_stimuli(directory, checkpoint, n=4)}


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_rerun_after_a_kill_before_model_json_records_the_head_and_the_data_classes(assets, tmp_path):
    spec = ModelSpec("convnext", MODEL, assets["checkpoint"])
    config = SweepConfig(stimuli=assets["stimuli"], **FAST)
    assert run_sweep([spec], config, tmp_path)[0].status == "done"
    folder = tmp_path / "convnext" / "l2_pgd"
    batches = {p.name: p.read_bytes() for p in (folder / "batches").iterdir()}
    for name in ("model.json", "summary.json", "results.csv"):  # killed after the last batch
        (folder / name).unlink()
    assert run_sweep([spec], config, tmp_path)[0].status == "done"
    summary = json.loads((folder / "summary.json").read_text())
    labels = load_stimuli(assets["stimuli"]).labels
    assert summary["num_classes"] == 4 and summary["data_classes"] == len(set(labels.tolist()))
    assert {p.name: p.read_bytes() for p in (folder / "batches").iterdir()} == batches  # nothing recomputed


def test_results_eps_is_nan_for_attacked_images_the_attack_did_not_fool(assets, tmp_path):
    config = SweepConfig(stimuli=assets["stimuli"], **{**FAST, "hi": 0.002, "lo": 0.001, "tol": 0.0005})
    assert run_sweep([ModelSpec("convnext", MODEL, assets["checkpoint"])], config, tmp_path)[0].status == "done"
    rows = _rows(tmp_path / "convnext" / "l2_pgd" / "results.csv")
    unfooled = [r for r in rows if r["clean_correct"] == "True" and r["fooled"] == "False"]
    assert unfooled and all(math.isnan(float(r["eps"])) for r in unfooled)


def test_a_model_file_swapped_before_loading_is_refused_not_filed_under_the_old_hash(assets, tmp_path, monkeypatch):
    checkpoint = tmp_path / "model.pth"
    shutil.copy(assets["checkpoint"], checkpoint)
    other = make_checkpoint(tmp_path, seed=1)
    spec = ModelSpec("convnext", MODEL, str(checkpoint))
    config = SweepConfig(stimuli=assets["stimuli"], **FAST)
    real_load = resume.load_model

    def swap_then_load(*args, **kwargs):
        shutil.copy(other, checkpoint)  # another model lands between the hash and the load
        return real_load(*args, **kwargs)

    monkeypatch.setattr(resume, "load_model", swap_then_load)
    outcome = run_sweep([spec], config, tmp_path / "out")[0]
    assert outcome.status == "failed" and "changed between the start of the sweep and its loading" in outcome.error
    folder = tmp_path / "out" / "convnext" / "l2_pgd"
    assert not (folder / "summary.json").exists() and not list(folder.glob("batches/*.csv"))
    monkeypatch.setattr(resume, "load_model", real_load)
    with pytest.raises(SweepError, match="model checkpoint changed"):  # a rerun never answers "cached"
        run_sweep([spec], config, tmp_path / "out")


def test_a_100_unit_head_always_answering_class_0_on_4_class_stimuli_is_flagged_end_to_end(tmp_path):
    from attacks_torch.models import load_model
    from attacks_torch.report import build_report
    from harmonization.clickme import encode_example, write_records

    rng = np.random.default_rng(1)
    write_records(
        tmp_path / "stim.tfrecords",
        [
            encode_example(
                {
                    "image": rng.uniform(0, 255, (32, 32, 3)).astype(np.float32).tobytes(),
                    "heatmap": rng.uniform(0, 1, (32, 32, 1)).astype(np.float32).tobytes(),
                    "label": label,
                }
            )
            for label in [0, 1, 2, 3] * 2
        ],
    )
    network = load_model(MODEL, weights="random", num_classes=100).network
    with torch.no_grad():
        network.head.fc.weight.zero_()
        network.head.fc.bias.zero_()
        network.head.fc.bias[0] = 100.0  # class 0 whatever the image
    torch.save(network.state_dict(), tmp_path / "wide.pth")
    config = SweepConfig(stimuli=str(tmp_path / "stim.tfrecords"), **{**FAST, "num_classes": 100})
    assert (
        run_sweep([ModelSpec("wide", MODEL, str(tmp_path / "wide.pth"))], config, tmp_path / "out")[0].status == "done"
    )
    summary = json.loads((tmp_path / "out" / "wide" / "l2_pgd" / "summary.json").read_text())
    assert (summary["accuracy"], summary["num_classes"], summary["data_classes"]) == (0.25, 100, 4)
    build_report(tmp_path / "out", tmp_path / "report")
    unreliable = json.loads((tmp_path / "report" / "statistics.json").read_text())["l2_pgd"]["unreliable"]
    assert "near chance (0.250 for 4 classes; below 0.400)" in unreliable["wide"]
    assert "wide (head of 100 units, 4 classes in the stimuli)" in (tmp_path / "report" / "report.md").read_text()
