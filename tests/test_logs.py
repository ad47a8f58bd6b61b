"""Logs that read well: progress bars only for a person (a terminal or a notebook), one line per
model or epoch in a log."""

import io
import sys


from builders import FAST_SWEEP, SWEEP_MODEL, make_checkpoint, make_stimuli, python_path

from attacks_torch.sweep import ModelSpec, SweepConfig, run_sweep
from harmonization.console import interactive, keras_verbose


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bars_only_on_a_terminal_or_in_a_notebook(monkeypatch):
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    assert interactive(Terminal()) and not interactive(io.StringIO())
    closed = io.StringIO()
    closed.close()
    assert not interactive(closed)
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert keras_verbose(None) == 2 and keras_verbose(0) == 0 and keras_verbose(1) == 1
    monkeypatch.setattr(sys, "stdout", Terminal())
    assert keras_verbose(None) == 1
    monkeypatch.setitem(sys.modules, "ipykernel", object())
    assert interactive(io.StringIO())


def test_a_sweep_logged_to_a_file_writes_one_line_per_model_and_no_bar(tmp_path, capsys):
    checkpoint = make_checkpoint(tmp_path)
    stimuli = make_stimuli(tmp_path, checkpoint, n=4, shards=1)
    config = SweepConfig(stimuli=stimuli, **{**FAST_SWEEP, "progress": True})
    specs = [ModelSpec("first", SWEEP_MODEL, checkpoint), ModelSpec("second", SWEEP_MODEL, checkpoint)]
    outcomes = run_sweep(specs, config, tmp_path / "sweep")
    assert [o.status for o in outcomes] == ["done", "done"]
    err = capsys.readouterr().err  # pytest's capture is not a terminal
    assert "\r" not in err and "\x1b[" not in err
    lines = [line for line in err.splitlines() if line.startswith("[")]
    assert [line.split(" (")[0] for line in lines] == ["[1/2] first [l2_pgd]: done", "[2/2] second [l2_pgd]: done"]
    assert all(line.endswith(" s)") for line in lines)


def test_tensorflow_start_up_lines_appear_once_per_command_and_not_at_all_when_asked():
    import os
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": python_path(root)}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    command = [sys.executable, "-m", "harmonization.cli", "zoo"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0 and "vgg16" in done.stdout, done.stderr[-2000:]
    lines = [line.split("] ", 1)[-1] for line in done.stderr.splitlines()]
    assert len(lines) == len(set(lines)), done.stderr  # each start-up line once
    own = subprocess.run(
        [sys.executable, "-c", "import harmonization, tensorflow"], capture_output=True, text=True, env=env, timeout=300
    )  # any program importing harmonization first
    assert own.returncode == 0, own.stderr[-2000:]
    own_lines = [line.split("] ", 1)[-1] for line in own.stderr.splitlines()]
    assert len(own_lines) == len(set(own_lines)), own.stderr
    quiet = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env={**env, "TF_CPP_MIN_LOG_LEVEL": "2"}
    )
    assert quiet.returncode == 0 and "absl::InitializeLog" not in quiet.stderr
    assert not [line for line in quiet.stderr.splitlines() if line.startswith("I0")], quiet.stderr
