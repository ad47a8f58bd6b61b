"""`make demo` at a reduced size: every stage's artefact is written, the table has a row per model,
and a second run reuses the finished stages."""
import csv
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_demo(out: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, str(ROOT / "scripts" / "demo.py"), "--out", str(out), "--epochs", "1",
               "--n-train", "128", "--n-val", "32", "--stimuli-per-class", "2", "--photos", "1"]
    return subprocess.run(command, capture_output=True, text=True, timeout=1500, cwd=ROOT)


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
    assert all(row["tolerance (L2)"] for row in rows)
    human = {row["model"]: row["human alignment, sweep (rho)"] for row in rows}  # measured where there are maps
    assert human["efficientnet_lite0_imagenet"] == "n/a" and "±" in human["control"] and "±" in human["harmonized"]
    for stage in ("stage 1/5", "stage 5/5", "demo finished"):
        assert stage in first.stdout

    second = run_demo(out)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "harmonize train" not in second.stdout  # trained models are reused
    assert "harmonize evaluate" not in second.stdout
