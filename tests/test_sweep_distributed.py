"""The sweep under torchrun (2 processes, gloo on CPU) gives the rows of one process, and resumes."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from builders import FAST_SWEEP as FAST
from builders import SWEEP_MODEL as MODEL
from builders import cli_args, make_checkpoint

from attacks_torch.sweep import ModelSpec, SweepConfig, SweepFolder
from attacks_torch.sweep.scoring import attack_and_score

MINI = textwrap.dedent("""
    import sys
    from harmonization.data import clickme_mini
    print(clickme_mini(sys.argv[1], train_size=8, val_size=4, conflict_size=4, stimuli_per_class=2)["stimuli"])
""")


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    directory = tmp_path_factory.mktemp("mini")
    result = subprocess.run([sys.executable, "-c", MINI, str(directory)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return {"stimuli": result.stdout.strip().splitlines()[-1], "checkpoint": make_checkpoint(directory)}


def _torchrun(args: list[str]) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "attacks_torch.cli",
        *args,
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)


def test_torchrun_two_processes_give_the_rows_of_one_and_resume(mini, tmp_path):
    torch.set_num_threads(1)
    single = tmp_path / "single"
    spec = ModelSpec("convnext", MODEL, mini["checkpoint"])
    (outcome,) = attack_and_score([spec], SweepConfig(stimuli=mini["stimuli"], **FAST), single)
    assert outcome.status == "done"
    expected = (single / "convnext" / "l2_pgd" / "results.csv").read_bytes()
    rows = SweepFolder(single).model("convnext", "l2_pgd").read_results()
    assert len(rows) == 8 and any(r["fooled"] == "True" for r in rows)

    out = tmp_path / "torchrun"
    folder = out / "convnext" / "l2_pgd"
    args = cli_args(f"convnext={MODEL}@{mini['checkpoint']}", mini["stimuli"], out)
    result = _torchrun(args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("convnext [l2_pgd]: done") == 1  # rank 0 alone reports
    assert (folder / "results.csv").read_bytes() == expected
    assert sorted(p.name for p in (folder / "batches").glob("*.csv")) == ["000000.csv", "000004.csv"]

    kept = (folder / "batches" / "000000.csv").stat().st_mtime_ns
    for name in ("results.csv", "summary.json", "batches/000004.csv"):  # rank 1's batch is lost
        (folder / name).unlink()
    result = _torchrun(args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (folder / "results.csv").read_bytes() == expected
    assert (folder / "batches" / "000000.csv").stat().st_mtime_ns == kept
