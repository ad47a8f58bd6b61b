"""The one error type that names arguments (``harmonization.errors``): the library's wording, the
same message rendered with a command line's flags, and both CLIs reporting it in one line."""

import argparse
import dataclasses

import pytest

from attacks_torch import cli as adv_align
from attacks_torch.sweep import SweepConfig, SweepError
from harmonization.cli.toolkit import (
    OneLineParser,
    UsageError,
    flag_names,
    number,
    one_line,
    within,
)
from harmonization.errors import ArgumentError
from harmonization.files import OutputError
from harmonization.models import ModelFileError
from harmonization.training import ConfigError, StaleRunError, TrainingCollapsed


def test_a_library_error_is_worded_by_the_library_and_rendered_with_a_cli_s_flags():
    with pytest.raises(SweepError) as refused:
        SweepConfig(stimuli="x", lo=5.0, hi=1.0)
    assert str(refused.value) == "need 0 < lo < hi, got 5.0, 1.0"
    assert refused.value.render({"lo": "--lo", "hi": "--hi"}) == "need 0 < --lo < --hi, got 5.0, 1.0"
    assert refused.value.render({"lo": "--lo"}) == "need 0 < --lo < hi, got 5.0, 1.0"  # hi unnamed
    assert one_line(refused.value, adv_align.FLAGS) == "need 0 < --lo < --hi, got 5.0, 1.0"


def test_training_errors_name_switches_by_the_setting_that_flips_them():
    error = StaleRunError(
        lambda name: f"run holds other settings: {name('lr')}; {name('fresh')} starts over", {"lr": (0.1, 0.2)}
    )
    assert str(error) == error.message() == "run holds other settings: lr; fresh=True starts over"
    assert error.render({"lr": "--lr", "fresh": "--fresh"}) == "run holds other settings: --lr; --fresh starts over"
    assert error.changed == {"lr": (0.1, 0.2)}
    assert isinstance(error, ConfigError) and isinstance(error, ValueError)
    collapsed = TrainingCollapsed(lambda name: f"at chance; {name('collapse_guard')} continues")
    assert str(collapsed) == "at chance; collapse_guard=False continues"
    assert isinstance(collapsed, RuntimeError)


def test_every_library_error_that_names_arguments_is_one_type():
    errors = [
        SweepError("x"),
        ConfigError("x"),
        StaleRunError("x", {}),
        TrainingCollapsed("x"),
        ModelFileError("model file m.h5: not HDF5"),
    ]
    assert all(isinstance(error, ArgumentError) for error in errors)
    assert str(errors[-1]) == errors[-1].render({"model": "--model"}) == "model file m.h5: not HDF5"
    about = SweepError.about("out_dir", " o: is a file, not a folder")
    assert str(about) == "out_dir o: is a file, not a folder"
    assert about.render({"out_dir": "--out"}) == "--out o: is a file, not a folder"


def test_one_line_names_the_file_of_an_os_error_and_refuses_bugs():
    assert (
        one_line(FileNotFoundError(2, "No such file or directory", "in.csv"), {}) == "in.csv: No such file or directory"
    )
    assert one_line(OutputError(28, "cannot write o/a.csv: no space left"), {}) == "cannot write o/a.csv: no space left"
    assert one_line(UsageError("--out o:\n  is an input"), {}) == "--out o: is an input"
    assert one_line(KeyError("bug"), {}) is None and one_line(TypeError("bug"), {}) is None


def test_the_one_parser_exits_2_with_one_line_naming_the_flag(capsys):
    parser = OneLineParser(prog="tool")
    commands = parser.add_subparsers(dest="command", required=True)
    sub = commands.add_parser("run")
    sub.add_argument("--count", type=within(int, 1, 9))
    sub.add_argument("--rate", type=number(float, 0.0, inclusive=False))
    assert flag_names(sub)["count"] == "--count"
    for argv, says in (
        (["run", "--count", "10"], "argument --count: expected an integer from 1 to 9, got 10"),
        (["run", "--rate", "0"], "argument --rate: 0 must be > 0.0"),
    ):
        with pytest.raises(SystemExit) as exited:
            parser.parse_args(argv)
        lines = capsys.readouterr().err.strip().splitlines()
        assert exited.value.code == 2 and lines == [f"tool: error: {says} (see tool run --help)"]
    with pytest.raises(argparse.ArgumentTypeError, match="expected a finite number in"):
        within(float, 0, 1)("nan")


def test_adv_align_takes_its_defaults_from_sweep_config(monkeypatch, tmp_path):
    taken = {}

    def attack_and_score(models, config, out, pairs, **kwargs):
        taken["config"] = config
        return []

    monkeypatch.setattr(adv_align, "attack_and_score", attack_and_score)
    stimuli = str(tmp_path / "stimuli-*.tfrecord")
    assert adv_align.main(["attack", "--models", "resnet18", "--stimuli", stimuli, "--out", str(tmp_path / "out")]) == 0
    library = SweepConfig(stimuli=stimuli)
    for field in dataclasses.fields(SweepConfig):
        if field.name != "attack_options":  # the CLI passes {} for none
            assert getattr(taken["config"], field.name) == getattr(library, field.name), field.name
    assert taken["config"].resolved_attack_options() == library.resolved_attack_options()
    assert (
        adv_align.main(
            ["attack", "--models", "resnet18", "--stimuli", stimuli, "--out", str(tmp_path / "out"), "--tf32"]
        )
        == 0
    )
    assert taken["config"].tf32 is True


def test_adv_align_reports_a_library_error_with_its_flags_in_one_line(capsys, tmp_path):
    code = adv_align.main(
        ["attack", "--models", "resnet18", "--stimuli", "x", "--out", str(tmp_path / "out"), "--lo", "5", "--hi", "1"]
    )
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "adv-align attack: error: need 0 < --lo < --hi, got 5.0, 1.0"
    ]
    assert not (tmp_path / "out").exists()
