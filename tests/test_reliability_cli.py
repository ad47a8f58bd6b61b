"""Issue #22, attack side: ``adv-align`` never writes over what it reads, bounds every number, names
files that it cannot use in one line (exit 2), stops cleanly on Ctrl-C; ids, globs and model lists."""

import glob
import os
import subprocess
import sys

import numpy as np
import pytest
from builders import SWEEP_MODEL as MODEL
from builders import cli_args, make_checkpoint, make_stimuli

from attacks_torch.cli import main
from attacks_torch.stimuli import load_stimuli
from attacks_torch.sweep import SweepError, parse_models, parse_pairs
from harmonization.clickme import encode_example, write_records


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    directory = tmp_path_factory.mktemp("assets")
    checkpoint = make_checkpoint(directory)
    return {"checkpoint": checkpoint, "stimuli": make_stimuli(directory, checkpoint, n=4, shards=1)}


def _error(capsys, argv):
    """(exit code, stderr lines) of ``adv-align argv``; argparse's exit counts as a return."""
    try:
        code = main(argv)
    except SystemExit as exit_info:
        code = exit_info.code
    return code, capsys.readouterr().err.strip().splitlines()


def _snapshot(folder):
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    "flag, value, says",
    [
        ("--tol", "inf", "argument --tol: expected a finite number"),
        ("--hi", "1e300", "argument --hi: expected a finite"),
        ("--lo=-1e300", None, "argument --lo: expected a finite"),
        ("--lo", "nan", "argument --lo: expected a finite"),
        ("--seed", str(2**64), "argument --seed: expected an integer from 0"),
        ("--threads", "100000", "argument --threads: expected an integer from 1 to 1024"),
        ("--num-classes", str(2**40), "argument --num-classes: expected an integer from 2"),
        ("--batch-size", "0", "argument --batch-size"),
        ("--pgd-steps", "-1", "argument --pgd-steps"),
        ("--keep-maps", "-1", "argument --keep-maps"),
        ("--limit", "1e3", "argument --limit: expected an integer"),
        ("--pgd-step-size", "-0.5", "argument --pgd-step-size"),
        ("--ddn-gamma", "1", "argument --ddn-gamma"),
    ],
)
def test_every_numeric_flag_is_bounded_in_one_line(capsys, tmp_path, flag, value, says):
    code, err = _error(
        capsys,
        [
            "attack",
            "--models",
            "m",
            "--stimuli",
            "x",
            "--out",
            str(tmp_path / "o"),
            flag,
            *([] if value is None else [value]),
        ],
    )
    assert code == 2 and len(err) == 1 and says in err[0]
    assert not (tmp_path / "o").exists()


def test_report_panels_and_empty_or_overlong_outputs_are_refused(capsys, tmp_path):
    assert _error(capsys, ["report", str(tmp_path), "--out", str(tmp_path / "r"), "--panels", "-1"])[0] == 2
    keep = tmp_path / "keep.txt"
    keep.write_text("mine\n")
    before, cwd = _snapshot(tmp_path), sorted(os.listdir())
    code, err = _error(capsys, ["attack", "--models", "m", "--stimuli", "x", "--out", ""])
    assert code == 2 and err == ["adv-align attack: error: --out: an empty path (give a folder to write into)"]
    long_name = "n" * 300
    for argv in (
        ["attack", "--models", "m", "--stimuli", "x", "--out", str(tmp_path / long_name)],
        ["report", str(tmp_path), "--out", str(tmp_path / long_name / "r")],
    ):
        code, err = _error(capsys, argv)
        assert code == 2 and len(err) == 1 and "is 300 bytes long, more than the 255" in err[0]
    assert _snapshot(tmp_path) == before and sorted(os.listdir()) == cwd  # nothing written into the cwd


def test_out_over_an_input_is_refused_keeping_the_input(capsys, tmp_path, assets):
    model = tmp_path / "run" / "model.keras"
    model.parent.mkdir()
    model.write_bytes(b"PK\x03\x04 a trained model")
    shard = glob.glob(assets["stimuli"])[0]
    for out, culprit in (
        (str(model), "is the model file"),
        (shard, "is the stimulus file"),
        (assets["checkpoint"], "is the checkpoint"),
    ):
        models = f"m={model}" if "model file" in culprit else f"c={MODEL}@{assets['checkpoint']}"
        before = open(out, "rb").read()
        code, err = _error(
            capsys,
            [
                "attack",
                "--models",
                models,
                "--stimuli",
                assets["stimuli"],
                "--out",
                out,
                "--weights",
                "random",
                "--num-classes",
                "4",
            ],
        )
        assert code == 2 and len(err) == 1 and culprit in err[0] and out in err[0]
        assert open(out, "rb").read() == before
    sweep = tmp_path / "sweep"
    (sweep / "a" / "l2_pgd").mkdir(parents=True)
    (sweep / "a" / "l2_pgd" / "summary.json").write_text("{}")
    before = _snapshot(sweep)
    for out, culprit in ((sweep, "is the sweep folder"), (sweep / "a" / "l2_pgd" / "r", "lies in the model folder")):
        code, err = _error(capsys, ["report", str(sweep), "--out", str(out)])
        assert code == 2 and len(err) == 1 and culprit in err[0]
    assert _snapshot(sweep) == before


# A child that runs the CLI and sends itself Ctrl-C (SIGINT) as soon as its first batch file is
# committed: the interrupt lands at the same point on every machine, however fast or busy.
INTERRUPTED_AFTER_FIRST_BATCH = """
import os, signal, sys
from attacks_torch.cli import main
from attacks_torch.sweep import store

commit = store.ModelFolder.write_batch

def commit_then_interrupt(self, *args, **kwargs):
    commit(self, *args, **kwargs)
    store.ModelFolder.write_batch = commit
    os.kill(os.getpid(), signal.SIGINT)

store.ModelFolder.write_batch = commit_then_interrupt
sys.exit(main(sys.argv[1:]))
"""


def test_ctrl_c_prints_one_line_exits_130_and_the_same_command_resumes(tmp_path, assets):
    out = tmp_path / "out"
    argv = cli_args(f"c={MODEL}@{assets['checkpoint']}", assets["stimuli"], out, "--batch-size", "1")
    process = subprocess.Popen(
        [sys.executable, "-c", INTERRUPTED_AFTER_FIRST_BATCH, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    batches = out / "c" / "l2_pgd" / "batches"
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130 and err.splitlines() == [
        "adv-align attack: interrupted; what was written is kept (every file is written whole), and the same "
        "command resumes"
    ]
    kept = {p.name: p.read_bytes() for p in batches.glob("*.csv")}
    assert kept and not (out / "c" / "l2_pgd" / "summary.json").exists()
    assert main(argv) == 0
    assert {name: (batches / name).read_bytes() for name in kept} == kept  # kept, not recomputed
    assert len(list(batches.glob("*.csv"))) == 4 and (out / "c" / "l2_pgd" / "summary.json").exists()


def _shard(path, labels, value=0.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.full((8, 8, 3), 50.0 + value, np.float32)
    write_records(
        path,
        [
            encode_example(
                {"image": image.tobytes(), "heatmap": np.ones((8, 8, 1), np.float32).tobytes(), "label": label}
            )
            for label in labels
        ],
    )


def test_image_ids_stay_unique_across_folders_and_literal_names_win_over_globs(tmp_path):
    _shard(tmp_path / "a" / "s.tfrecords", [0, 1])
    _shard(tmp_path / "b" / "s.tfrecords", [2])
    stimuli = load_stimuli([str(tmp_path / "a" / "s.tfrecords"), str(tmp_path / "b" / "s.tfrecords")])
    assert stimuli.ids == ["a/s.tfrecords:0", "a/s.tfrecords:1", "b/s.tfrecords:0"]
    assert load_stimuli(str(tmp_path / "a" / "s.tfrecords")).ids == ["s.tfrecords:0", "s.tfrecords:1"]  # as before
    with pytest.raises(ValueError, match="is the same file as"):
        load_stimuli([str(tmp_path / "a" / "s.tfrecords"), str(tmp_path / "a" / ".." / "a" / "s.tfrecords")])
    _shard(tmp_path / "g" / "s[12].tfrecords", [3])
    _shard(tmp_path / "g" / "s1.tfrecords", [1, 1])
    literal = load_stimuli(str(tmp_path / "g" / "s[12].tfrecords"))
    assert literal.labels.tolist() == [3] and literal.ids == ["s[12].tfrecords:0"]


def test_models_lists_in_utf8_with_a_bom_or_crlf_others_named_single_files_and_reserved_labels(tmp_path):
    listing = tmp_path / "models.txt"
    listing.write_bytes("\ufeffgood=test_convnext\r\nbad=resnet18 # ö\r\n".encode("utf-8"))
    assert [s.label for s in parse_models(str(listing))] == ["good", "bad"]
    listing.write_bytes("gut=test_convnext # Grün\n".encode("latin-1"))
    with pytest.raises(SweepError) as error:
        parse_models(str(listing))
    assert str(error.value).startswith(f"models {listing}: not UTF-8 text (byte 0xfc") and "\n" not in str(error.value)
    pairs = tmp_path / "pairs.csv"
    pairs.write_bytes("\ufeffcontrol,harmonized\r\ngood,bad\r\n".encode("utf-8"))
    assert parse_pairs(str(pairs)) == [("good", "bad")]  # a BOM no longer hides the first column
    model = tmp_path / "run" / "model.keras"
    model.parent.mkdir()
    model.write_bytes(b"PK\x03\x04\xff\xfe binary")
    assert [(s.label, s.spec) for s in parse_models(str(model))] == [("model", str(model))]
    for label in ("summary.csv", "preview.npz", "pairs.csv", "Summary.CSV"):
        with pytest.raises(SweepError, match=f"label '{label}' is reserved"):
            parse_models(f"{label}=test_convnext")
