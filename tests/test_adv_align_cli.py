"""``adv-align``: zoo listing, exit codes, one-line errors, attack then report."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from builders import SWEEP_MODEL as MODEL
from builders import cli_args, make_checkpoint, make_stimuli

from attacks_torch import zoo
from attacks_torch.attacks.registry import ATTACK_REGISTRY
from attacks_torch.cli import main


def _one_line_error(capsys, argv: list[str], pattern: str) -> None:
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and pattern in lines[0], captured.err


def test_zoo_lists_filters_and_counts(capsys):
    assert main(["zoo", "--family", "swin"]) == 0
    assert capsys.readouterr().out.split() == zoo.default_models(family="swin")
    assert main(["zoo", "--arch", "vit", "--count"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].split() == ["total", "121"] and "Swin\tViT\t22" in lines
    assert main(["zoo", "--family", "vgg", "--all"]) == 0
    names = capsys.readouterr().out.split()
    assert set(zoo.default_models(family="vgg")) <= set(names) and all(n.startswith("vgg") for n in names)
    _one_line_error(capsys, ["zoo", "--family", "alexnet"], "unknown family 'alexnet'")


def test_bad_arguments_exit_2_with_one_line(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["attack", "--stimuli", "x", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--models" in err[0]
    with pytest.raises(SystemExit) as exit_info:
        main(["attack", "--models", "m", "--stimuli", "x", "--out", str(tmp_path), "--batch-size", "0"])
    assert exit_info.value.code == 2
    assert "--batch-size" in capsys.readouterr().err
    _one_line_error(
        capsys,
        [
            "attack",
            "--models",
            "m",
            "--stimuli",
            str(tmp_path / "none*.tfrecords"),
            "--out",
            str(tmp_path / "out"),
            "--weights",
            "random",
        ],
        "no stimulus file matches",
    )
    _one_line_error(
        capsys,
        ["attack", "--models", "m", "--stimuli", "x", "--out", str(tmp_path), "--lo", "5", "--hi", "1"],
        "--lo < --hi",
    )
    _one_line_error(capsys, ["report", str(tmp_path / "no-sweep"), "--out", str(tmp_path / "r")], "does not exist")
    base = ["attack", "--models", "m", "--stimuli", "x", "--out", str(tmp_path)]
    _one_line_error(capsys, [*base, "--attack-options", "[1]"], "--attack-options: expected a JSON object")
    _one_line_error(capsys, [*base, "--attack-options", "{steps: 1}"], "--attack-options: not valid JSON")
    _one_line_error(capsys, [*base, "--attack-options", '{"stepz": 1}'], "--attack-options: unknown option 'stepz'")
    _one_line_error(capsys, [*base, "--attack", "ddn", "--pgd-steps", "2"], "--pgd-steps is an option of l2_pgd")
    _one_line_error(capsys, [*base, "--tol", "1e-20"], "--tol 1e-20 is below the float32 resolution of eps at --hi")
    _one_line_error(capsys, ["report", str(tmp_path), "--out", str(tmp_path / "r"), "--arch", "a=mlp"], "--arch: ")


def test_attack_option_flags_reach_the_attack_and_its_fingerprint(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    entry, received = ATTACK_REGISTRY["ddn"], []

    def recording_ddn(*args, **options):  # the real DDN, after noting the options it was called with
        received.append(options)
        return entry.function(*args, **options)

    monkeypatch.setitem(ATTACK_REGISTRY, "ddn", dataclasses.replace(entry, function=recording_ddn))
    checkpoint = make_checkpoint(tmp_path)
    stimuli = make_stimuli(tmp_path, checkpoint, n=4, shards=1)
    out = tmp_path / "out"
    argv = cli_args(
        f"ok={MODEL}@{checkpoint}",
        stimuli,
        out,
        "--attack",
        "ddn",
        "--ddn-steps",
        "7",
        "--attack-options",
        '{"gamma": 0.1, "steps": 50}',
    )
    assert main(argv) == 0
    config = json.loads((out / "ok" / "ddn" / "config.json").read_text())
    assert config["attack_options"] == {**ATTACK_REGISTRY["ddn"].defaults, "steps": 7, "gamma": 0.1, "bounds": [0, 1]}
    assert config["search"] == {}  # the eps search settings do not apply to a minimum-norm attack
    assert received, "the attack never ran"
    for options in received:  # every batch's call, with the flag's and the JSON's values
        assert options["steps"] == 7 and options["gamma"] == 0.1, options
        assert {**options, "bounds": list(options["bounds"])} == config["attack_options"], options


@pytest.mark.compat
def test_attack_exit_code_and_report(capsys, tmp_path):
    torch.set_num_threads(1)
    checkpoint = make_checkpoint(tmp_path)
    stimuli = make_stimuli(tmp_path, checkpoint, n=4, shards=1)
    out = tmp_path / "out"
    code = main(cli_args(f"ok={MODEL}@{checkpoint},bad=no_such_net", stimuli, out, "--pairs", "ok=bad"))
    captured = capsys.readouterr()
    assert code == 1  # one model failed, the other finished
    assert "ok [l2_pgd]: done" in captured.out
    assert "bad [l2_pgd]: failed: ValueError: unknown timm model 'no_such_net'" in captured.err
    accuracy = tmp_path / "accuracy.csv"
    accuracy.write_text("model,top1\nok,55.5\n")
    assert (
        main(["report", str(out), "--out", str(tmp_path / "report"), "--accuracy", str(accuracy), "--arch", "ok=vit"])
        == 0
    )
    report = Path(capsys.readouterr().out.strip())
    text = report.read_text()
    assert "| ok | ViT | 55.50 | csv | 4 |" in text and "## Failed models" in text
    shutil.rmtree(out / "bad")
    assert main(cli_args(f"ok={MODEL}@{checkpoint}", stimuli, out)) == 0  # finished before: nothing to do
    assert "ok [l2_pgd]: cached" in capsys.readouterr().out


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "adv-align"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "attacks_torch.cli"]
    result = subprocess.run(
        [*command, "zoo", "--count", "--family", "vgg"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "VGG\tCNN\t8"
