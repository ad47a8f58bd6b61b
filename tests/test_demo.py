"""`make demo` at a reduced size: every stage's artefact is written, the table has a row per model,
a second run reuses the finished stages (a sweep that finished every model included), and `--fresh`
starts over."""

import csv
import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_demo(out: Path) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        str(ROOT / "scripts" / "demo.py"),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--n-train",
        "128",
        "--n-val",
        "32",
        "--stimuli-per-class",
        "2",
        "--photos",
        "1",
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=1500, cwd=ROOT)


def mean_of(cell: str) -> float:
    """The mean of a "mean ± sem" table cell ("n/a" is not a number, and fails)."""
    return float(cell.split(" ± ")[0])


def test_demo_writes_every_artefact_and_resumes(tmp_path):
    out = tmp_path / "demo"
    first = run_demo(out)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for name in ("control", "harmonized"):
        assert (out / name / "model.keras").is_file()
        assert (out / name / "evaluation.json").is_file()
    assert list((out / "data").glob("stimuli-*.tfrecords"))
    assert (out / "attacks" / "summary.csv").is_file()
    report = out / "report"
    assert (report / "report.md").is_file() and list(report.glob("*.png"))
    with open(out / "demo-table.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["model"] for row in rows} == {"control", "harmonized", "efficientnet_lite0_imagenet"}
    for row in rows:  # every model was fooled at some eps: a finite, positive mean tolerance
        assert math.isfinite(mean_of(row["tolerance (L2)"])) and mean_of(row["tolerance (L2)"]) > 0, row
    human = {row["model"]: row["human alignment, sweep (rho)"] for row in rows}  # measured where there are maps
    assert human["efficientnet_lite0_imagenet"] == "n/a" and "±" in human["control"] and "±" in human["harmonized"]
    for stage in ("stage 1/5", "stage 5/5", "demo finished"):
        assert stage in first.stdout
    assert "harmonize train" in first.stdout and "harmonize evaluate" in first.stdout

    second = run_demo(out)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    for command in ("harmonize train", "harmonize evaluate", "adv-align attack", "adv-align report"):
        assert command not in second.stdout  # finished stages are reused
    with open(out / "demo-table.csv") as handle:
        assert list(csv.DictReader(handle)) == rows  # the same table, from the same files


class Stopped(Exception):
    """Raised by the stand-in for the demo's first CLI call."""


def demo_module():
    spec = importlib.util.spec_from_file_location("demo_script", ROOT / "scripts" / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    return demo


def test_a_sweep_is_skipped_only_when_it_finished_every_model(tmp_path):
    swept = demo_module().swept
    assert not swept(tmp_path, ["control"])  # no summary.csv yet
    rows = ["model,attack,status", "control,l2_pgd,done", "harmonized,l2_pgd,failed", "other,linf_pgd,done"]
    (tmp_path / "summary.csv").write_text("\n".join(rows) + "\n")
    assert swept(tmp_path, ["control"])
    assert not swept(tmp_path, ["control", "harmonized"])  # a failed model is attacked again
    assert not swept(tmp_path, ["other"])  # another attack's row


def test_fresh_deletes_the_finished_stages_and_starts_at_stage_1(tmp_path, monkeypatch):
    demo = demo_module()
    out = tmp_path / "demo"
    finished = [out / "data" / "splits.json", out / "control" / "model.keras", out / "demo-table.csv"]
    for path in finished:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    commands = []

    def first_command(*command, capture=False):
        commands.append([str(part) for part in command])
        raise Stopped

    monkeypatch.setattr(demo, "run", first_command)
    with pytest.raises(Stopped):
        demo.main(["--out", str(out), "--fresh"])
    assert Path(commands[0][0]).name == "harmonize" and commands[0][1] == "mini"  # stage 1 again
    assert not any(path.exists() for path in finished)
    # `make demo DEMO_ARGS=--fresh` hands the flag to the script
    made = subprocess.run(["make", "-n", "demo", "DEMO_ARGS=--fresh"], capture_output=True, text=True, cwd=ROOT)
    assert "scripts/demo.py --fresh" in made.stdout, made.stdout + made.stderr
