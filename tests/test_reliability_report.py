"""Issue #22, attack side: the report judges chance from the stimuli's classes, refuses mixed stimulus
sets and accuracy values that are not percentages, each in one line with exit code 2."""

import json
import math

import pytest

from attacks_torch.cli import main
from attacks_torch.sweep import RESULT_COLUMNS
from attacks_torch.sweep.store import csv_text


def _summary(sweep, label, accuracy, num_classes, data_classes=None, stimuli="a" * 64, labels=None):
    """One finished l2_pgd model folder as the sweep writes it (results.csv only when ``labels``)."""
    folder = sweep / label / "l2_pgd"
    folder.mkdir(parents=True)
    values = {m: {"mean": 0.5 + 0.1 * len(label), "sem": 0.01} for m in ("eps", "l2", "linf", "alignment")}
    summary = {
        "model": label,
        "spec": "test_convnext",
        "attack": "l2_pgd",
        "norm": "l2",
        "status": "done",
        "n_images": 100,
        "n_attacked": round(100 * accuracy),
        "n_fooled": 50,
        "accuracy": accuracy,
        "num_classes": num_classes,
        "config": {"stimuli": {"n_images": 100, "sha256": stimuli}},
        **values,
    }
    if data_classes is not None:
        summary["data_classes"] = data_classes
    (folder / "summary.json").write_text(json.dumps(summary))
    if labels is not None:  # an older sweep: no data_classes, the labels in results.csv
        cells = [
            {
                "model": label,
                "image_id": f"s.tfrecords:{i}",
                "label": y,
                "clean_pred": 0,
                "clean_correct": y == 0,
                "fooled": False,
                "attack": "l2_pgd",
                "norm": "l2",
            }
            for i, y in enumerate(labels)
        ]
        rows = [[row.get(column, math.nan) for column in RESULT_COLUMNS] for row in cells]  # measures NaN
        (folder / "results.csv").write_text(csv_text(RESULT_COLUMNS, rows))


def _run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.err.strip().splitlines()


def test_a_wide_head_answering_one_class_is_near_chance_by_the_stimuli_classes(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    for label, acc in (("a", 0.9), ("b", 0.8), ("c", 0.95)):
        _summary(sweep, label, acc, 4, 4)
    _summary(sweep, "wide", 0.25, 100, 4)  # 100 units, always class 0, on 4 balanced classes
    _summary(sweep, "old_wide", 0.25, 100, labels=[0, 1, 2, 3] * 25)  # the classes come from results.csv
    code, err = _run(capsys, "report", str(sweep), "--out", str(tmp_path / "report"))
    assert code == 0 and err == []
    statistics = json.loads((tmp_path / "report" / "statistics.json").read_text())["l2_pgd"]
    assert set(statistics["unreliable"]) == {"wide", "old_wide"}
    assert "near chance (0.250 for 4 classes; below 0.400)" in statistics["unreliable"]["wide"]
    text = (tmp_path / "report" / "report.md").read_text()
    assert "wide (head of 100 units, 4 classes in the stimuli)" in text
    assert "old_wide (head of 100 units, 4 classes in the stimuli)" in text
    assert statistics["accuracy_vs_tolerance"]["n"] == 3


def test_a_folder_of_two_stimulus_sets_is_refused_in_one_line(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    _summary(sweep, "a", 0.9, 4, 4, stimuli="1" * 64)
    _summary(sweep, "b", 0.8, 4, 4, stimuli="2" * 64)
    report = tmp_path / "report"
    report.mkdir()
    (report / "report.md").write_text("an earlier report\n")
    code, err = _run(capsys, "report", str(sweep), "--out", str(report))
    assert code == 2 and len(err) == 1
    assert (
        f"{sweep}: holds sweeps of 2 different stimulus sets (111111111111: a/l2_pgd; 222222222222: b/l2_pgd)" in err[0]
    )
    assert (report / "report.md").read_text() == "an earlier report\n" and len(list(report.iterdir())) == 1


def test_an_accuracy_csv_in_another_encoding_is_named_in_one_line(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    _summary(sweep, "a", 0.9, 4, 4)
    accuracy = tmp_path / "acc.csv"
    accuracy.write_bytes("model,top1\nGrün,80\n".encode("latin-1"))
    code, err = _run(capsys, "report", str(sweep), "--accuracy", str(accuracy), "--out", str(tmp_path / "r"))
    assert code == 2 and err == [
        f"adv-align report: error: {accuracy}: not UTF-8 text (byte 0xfc at offset 13); save it as UTF-8"
    ]


@pytest.mark.parametrize("value", ["-5", "nan", "inf", "101"])
def test_accuracy_values_that_are_not_percentages_are_refused_naming_file_and_row(tmp_path, capsys, value):
    sweep = tmp_path / "sweep"
    _summary(sweep, "a", 0.9, 4, 4)
    accuracy = tmp_path / "acc.csv"
    accuracy.write_text(f"model,top1\nother,80\ntest_convnext,{value}\n")
    code, err = _run(capsys, "report", str(sweep), "--accuracy", str(accuracy), "--out", str(tmp_path / "r"))
    assert code == 2 and len(err) == 1
    assert f"{accuracy}: line 3: top1 '{value}' is not a percentage in [0, 100]" in err[0]
    assert not (tmp_path / "r").exists()
