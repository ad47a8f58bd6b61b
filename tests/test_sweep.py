"""The sweep: result tables, summaries, resuming after SIGKILL, failures, jobs sharing a folder."""

import csv
import dataclasses
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats
from builders import FAST_SWEEP as FAST
from builders import SWEEP_MODEL as MODEL
from builders import cli_args, make_checkpoint, make_stimuli

from attacks_torch.models import load_model
from attacks_torch.stimuli import load_stimuli
from attacks_torch.sweep import (
    ModelSpec,
    SweepConfig,
    SweepError,
    SweepFolder,
    parse_model_spec,
    parse_models,
    parse_pairs,
    run_sweep,
)
from harmonization.clickme import encode_example, write_records
from harmonization.files import atomic_write


# results.csv's header as docs/data-contracts.md documents it, written out here (not
# taken from the code) so that dropping, renaming or moving a column fails.
DOCUMENTED_COLUMNS = [
    "model",
    "image_id",
    "label",
    "clean_pred",
    "clean_correct",
    "fooled",
    "eps",
    "l2",
    "linf",
    "alignment",
    "human_alignment",
    "human_alignment_logprob",
    "attack",
    "norm",
]

# A child that runs the CLI and SIGKILLs itself as soon as its first batch file is committed: the
# kill lands at the same point on every machine, however fast or busy.
KILLED_AFTER_FIRST_BATCH = """
import os, signal, sys
from attacks_torch.cli import main
from attacks_torch.sweep import store

commit = store.ModelFolder.write_batch

def commit_then_die(self, start, rows):
    commit(self, start, rows)
    os.kill(os.getpid(), signal.SIGKILL)

store.ModelFolder.write_batch = commit_then_die
sys.exit(main(sys.argv[1:]))
"""


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    directory = tmp_path_factory.mktemp("assets")
    checkpoint = make_checkpoint(directory)
    return {"checkpoint": checkpoint, "stimuli": make_stimuli(directory, checkpoint)}


@pytest.fixture(scope="module")
def finished(assets, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    torch.set_num_threads(1)
    spec = ModelSpec("convnext", MODEL, assets["checkpoint"])
    config = SweepConfig(stimuli=assets["stimuli"], keep_maps=3, **FAST)
    outcomes = run_sweep([spec], config, out)
    assert outcomes[0].status == "done", outcomes[0].error
    return out, outcomes, config


def test_model_specs_and_pairs(tmp_path):
    assert parse_model_spec("resnet18") == ModelSpec("resnet18", "resnet18")
    assert parse_model_spec("ctrl = test_vit @ w.pth") == ModelSpec("ctrl", "test_vit", "w.pth")
    assert parse_model_spec("runs/harmonized_vgg16.keras") == ModelSpec(
        "harmonized_vgg16", "runs/harmonized_vgg16.keras"
    )
    assert ModelSpec("a/b c", "x").slug == "a_b_c"
    listing = tmp_path / "models.txt"
    listing.write_text("# the control and its harmonized twin\nctrl=test_vit\n\nharm=runs/h.keras  # ours\n")
    assert [s.label for s in parse_models(str(listing))] == ["ctrl", "harm"]
    with pytest.raises(SweepError, match="share the folder"):
        parse_models("a b=x,a_b=y")
    with pytest.raises(SweepError, match="for timm models only"):
        parse_model_spec("h=runs/h.keras@w.pth")
    assert parse_model_spec("vgg16_harmonized=published:vgg16:/w/vgg16_harmonized.h5") == ModelSpec(
        "vgg16_harmonized", "published:vgg16:/w/vgg16_harmonized.h5"
    )
    assert parse_model_spec("published:vgg16:/w/vgg16_harmonized.h5").label == "vgg16_harmonized"
    # num_classes sizes timm heads only: a Keras file or lite0 in the same sweep keeps its own head
    assert parse_model_spec("c=test_vit@w.pth").load_arguments("random", 4, 3) == {
        "weights": "random",
        "checkpoint": "w.pth",
        "seed": 3,
        "num_classes": 4,
    }
    for spec in ("runs/h.keras", "published:vgg16:/w/v.h5", "efficientnet_lite0_imagenet"):
        assert parse_model_spec(spec).load_arguments("random", 4, 3)["num_classes"] is None
    with pytest.raises(SweepError, match="models: .*published:NAME:PATH"):
        parse_model_spec("published:vgg16")
    with pytest.raises(SweepError, match="for timm models only"):
        parse_model_spec("published:vgg16:/w/v.h5@w.pth")
    assert parse_pairs("ctrl=harm, c2=h2") == [("ctrl", "harm"), ("c2", "h2")]
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("control,harmonized\nctrl,harm\n")
    assert parse_pairs(str(pairs)) == [("ctrl", "harm")]
    with pytest.raises(SweepError, match="not CONTROL=HARMONIZED"):
        parse_pairs("ctrl")


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("attack", "fgsm", "^attack must be one of"),
        ("batch_size", 0, "^batch_size must be at least 1"),
        ("lo", 20.0, "lo < hi"),
        ("schedule", "linear", "^schedule"),
        ("weights", "imagenet", "^weights"),
        ("device", "tpu", "^device"),
        ("tol", 1e-20, "^tol 1e-20 is below the float32 resolution"),
        ("attack_options", {"stepz": 3}, "^attack_options: unknown option 'stepz'"),
    ],
)
def test_config_rejects_bad_settings_naming_the_library_argument(field, value, message):
    with pytest.raises(SweepError, match=message) as error:
        SweepConfig(stimuli="x", **{field: value})
    flag = "--" + field.replace("_", "-")
    assert error.value.render({field: flag}).startswith(flag) or flag in error.value.render({field: flag})


def test_results_table_and_summary(finished, assets):
    out, outcomes, config = finished
    assert [(o.label, o.status) for o in outcomes] == [("convnext", "done")]
    folder = out / "convnext" / "l2_pgd"
    rows = read_rows(folder / "results.csv")
    assert list(rows[0]) == DOCUMENTED_COLUMNS
    stimuli = load_stimuli(assets["stimuli"])
    assert [r["image_id"] for r in rows] == stimuli.ids
    assert all(r["clean_correct"] == "True" and r["attack"] == "l2_pgd" and r["norm"] == "l2" for r in rows)
    fooled = [r for r in rows if r["fooled"] == "True"]
    assert len(fooled) >= 6
    for r in fooled:  # sphere projection: the perturbation has norm eps unless pixel clipping shortened it
        assert 0 < float(r["linf"]) <= float(r["l2"]) <= float(r["eps"]) * (1 + 1e-5)
    summary = json.loads((folder / "summary.json").read_text())
    assert (summary["n_images"], summary["n_attacked"], summary["n_fooled"]) == (8, 8, len(fooled))
    assert summary["accuracy"] == 1.0
    for measure in ("eps", "l2", "linf", "alignment"):
        values = np.array([float(r[measure]) for r in fooled])
        assert summary[measure]["mean"] == pytest.approx(values.mean(), rel=1e-12)
        assert summary[measure]["sem"] == pytest.approx(stats.sem(values), rel=1e-9)
    merged = read_rows(out / "summary.csv")
    assert merged[0]["model"] == "convnext" and merged[0]["status"] == "done"
    assert float(merged[0]["l2_mean"]) == pytest.approx(summary["l2"]["mean"], rel=1e-12)


def test_alignment_is_scipy_spearman_of_the_saved_perturbation_map(finished, assets):
    out, _, _ = finished
    folder = out / "convnext" / "l2_pgd"
    rows = read_rows(folder / "results.csv")
    model = load_model(MODEL, checkpoint=assets["checkpoint"], num_classes=4)
    assert model.input_size == (160, 160)
    heatmaps = model.resize_maps(load_stimuli(assets["stimuli"]).heatmaps).numpy()
    maps = sorted((folder / "maps").glob("*.npy"))
    assert [p.stem for p in maps] == [f"{i:06d}" for i in range(3) if rows[i]["fooled"] == "True"]
    for path in maps:
        index = int(path.stem)
        delta = np.load(path)
        assert delta.shape == (160, 160)  # the model's input grid, like the resized heatmap
        expected = stats.spearmanr(delta.ravel(), heatmaps[index].ravel()).statistic
        assert float(rows[index]["alignment"]) == pytest.approx(expected, abs=1e-3)
    preview = np.load(out / "preview.npz")
    assert preview["images"].shape == (3, 3, 32, 32) and list(preview["ids"]) == [r["image_id"] for r in rows[:3]]


def test_rerun_skips_finished_work_and_refuses_other_settings(finished, assets):
    out, _, config = finished
    folder = out / "convnext" / "l2_pgd"
    before = (folder / "results.csv").read_bytes()
    spec = ModelSpec("convnext", MODEL, assets["checkpoint"])
    assert run_sweep([spec], config, out)[0].status == "cached"
    (folder / "summary.json").unlink()
    (folder / "results.csv").unlink()
    (folder / "batches" / "000004.csv").unlink()
    kept = (folder / "batches" / "000000.csv").stat().st_mtime_ns
    (outcome,) = run_sweep([spec], config, out)
    assert outcome.status == "done" and outcome.timing["load_s"] > 0
    assert (folder / "batches" / "000000.csv").stat().st_mtime_ns == kept
    assert (folder / "results.csv").read_bytes() == before
    other = dataclasses.replace(config, batch_size=2)
    with pytest.raises(SweepError, match="batch_size"):
        run_sweep([spec], other, out)


def test_a_failing_model_is_recorded_and_the_sweep_goes_on(assets, tmp_path):
    config = SweepConfig(stimuli=assets["stimuli"], limit=4, **FAST)
    specs = [
        ModelSpec("broken", "no_such_net"),
        ModelSpec("missing", MODEL, str(tmp_path / "none.pth")),
        ModelSpec("ok", MODEL, assets["checkpoint"]),
    ]
    outcomes = run_sweep(specs, config, tmp_path / "out")
    assert [o.status for o in outcomes] == ["failed", "failed", "done"]
    failed = json.loads((tmp_path / "out" / "broken" / "l2_pgd" / "failed.json").read_text())
    assert failed["error_type"] == "ValueError" and "no_such_net" in failed["message"]
    assert "does not exist" in outcomes[1].error
    rows = {r["model"]: r for r in read_rows(tmp_path / "out" / "summary.csv")}
    assert rows["broken"]["status"] == "failed" and "unknown timm model" in rows["broken"]["error"]
    assert rows["ok"]["status"] == "done" and rows["ok"]["n_images"] == "4"


def _batches(folder: Path) -> list[Path]:
    return sorted((folder / "batches").glob("*.csv")) if (folder / "batches").exists() else []


def test_sigkill_in_the_middle_of_a_model_then_restart_gives_the_uninterrupted_table(assets, tmp_path):
    from attacks_torch.cli import main

    models = f"convnext={MODEL}@{assets['checkpoint']}"
    killed = tmp_path / "killed"
    folder = killed / "convnext" / "l2_pgd"
    command = [
        sys.executable,
        "-c",
        KILLED_AFTER_FIRST_BATCH,
        *cli_args(models, assets["stimuli"], killed, "--batch-size", "2"),
    ]
    process = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    assert process.returncode == -signal.SIGKILL, process.stderr[-3000:]
    done = _batches(folder)
    assert len(done) == 1 and not (folder / "results.csv").exists(), "the run was not stopped mid-model"
    stamps = {p.name: p.stat().st_mtime_ns for p in done}

    assert main(cli_args(models, assets["stimuli"], killed, "--batch-size", "2")) == 0
    clean = tmp_path / "clean"
    assert main(cli_args(models, assets["stimuli"], clean, "--batch-size", "2")) == 0
    assert (folder / "results.csv").read_bytes() == (clean / "convnext" / "l2_pgd" / "results.csv").read_bytes()
    assert {p.name: p.stat().st_mtime_ns for p in _batches(folder) if p.name in stamps} == stamps
    ids = [r["image_id"] for r in read_rows(folder / "results.csv")]
    assert len(ids) == len(set(ids)) == 8


def test_independent_jobs_share_an_output_folder(assets, tmp_path):
    out = tmp_path / "shared"
    jobs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "attacks_torch.cli",
                *cli_args(
                    f"{label}={MODEL}@{assets['checkpoint']}",
                    assets["stimuli"],
                    out,
                    "--limit",
                    "2",
                    "--pairs",
                    f"{label}=harmonized_{label}",
                ),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        for label in ("job_a", "job_b")
    ]
    for job in jobs:
        _, err = job.communicate(timeout=600)
        assert job.returncode == 0, err.decode()[-2000:]
    rows = read_rows(out / "summary.csv")
    assert sorted(r["model"] for r in rows) == ["job_a", "job_b"]
    assert all(r["status"] == "done" and r["n_images"] == "2" for r in rows)
    first, second = (out / f"job_{x}" / "l2_pgd" / "results.csv" for x in "ab")
    assert first.read_text().replace("job_a", "job_b") == second.read_text()
    assert sorted(read_rows(out / "pairs.csv"), key=lambda r: r["control"]) == [
        {"control": "job_a", "harmonized": "harmonized_job_a"},
        {"control": "job_b", "harmonized": "harmonized_job_b"},
    ]


def _copy_interrupted(finished, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the finished sweep as a run killed after its first batch leaves it."""
    out = tmp_path / "copy"
    shutil.copytree(finished[0], out)
    folder = out / "convnext" / "l2_pgd"
    for name in ("results.csv", "summary.json", "batches/000004.csv"):
        (folder / name).unlink()
    return out, folder


def _exit_2_with_one_line(capsys, argv: list[str], *names: str) -> str:
    from attacks_torch.cli import main

    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert all(name in err[0] for name in names), err[0]
    return err[0]


def test_a_changed_model_stimuli_or_attack_option_refuses_to_resume_naming_it(finished, assets, tmp_path, capsys):
    out, folder = _copy_interrupted(finished, tmp_path)
    kept = (folder / "batches" / "000000.csv").read_bytes()
    checkpoint = tmp_path / "weights.pth"
    shutil.copy(assets["checkpoint"], checkpoint)  # the same content elsewhere: resumes
    models = f"convnext={MODEL}@{checkpoint}"
    shutil.copy(make_checkpoint(tmp_path, seed=5), checkpoint)  # retrained into the same file
    _exit_2_with_one_line(
        capsys, cli_args(models, assets["stimuli"], out), "model checkpoint changed", "--fresh", "--out", str(folder)
    )
    other = tmp_path / "other-stimuli"
    other.mkdir()
    models = f"convnext={MODEL}@{assets['checkpoint']}"
    stimuli = make_stimuli(other, assets["checkpoint"], seed=1)  # same names and count, other pixels
    _exit_2_with_one_line(capsys, cli_args(models, stimuli, out), "stimuli changed")
    _exit_2_with_one_line(
        capsys, cli_args(models, assets["stimuli"], out, "--pgd-steps", "5"), "attack option steps: 3 -> 5"
    )
    _exit_2_with_one_line(
        capsys,
        cli_args(models, assets["stimuli"], out, "--attack-options", '{"projection": "ball"}'),
        "attack option projection: sphere -> ball",
    )
    _exit_2_with_one_line(
        capsys, cli_args(models, assets["stimuli"], out, "--cw-steps", "5"), "--cw-steps is an option of cw_l2"
    )
    assert (folder / "batches" / "000000.csv").read_bytes() == kept and not (folder / "results.csv").exists()


def test_fresh_starts_only_the_changed_model_over(finished, assets, tmp_path, capsys):
    from attacks_torch.cli import main

    out, folder = _copy_interrupted(finished, tmp_path)
    (out / "other" / "l2_pgd").mkdir(parents=True)
    (out / "other" / "l2_pgd" / "failed.json").write_text(
        '{"model": "other", "attack": "l2_pgd", "error_type": "E", "message": "m"}'
    )
    models = f"convnext={MODEL}@{assets['checkpoint']}"
    assert main(cli_args(models, assets["stimuli"], out, "--pgd-steps", "2", "--limit", "4", "--fresh")) == 0
    assert json.loads((folder / "config.json").read_text())["attack_options"]["steps"] == 2
    rows = SweepFolder(out).model("convnext", "l2_pgd").read_results()
    assert len(rows) == 4 and not (folder / "batches" / "000004.csv").exists()
    assert (out / "other" / "l2_pgd" / "failed.json").exists()
    assert list(np.load(out / "preview.npz")["ids"]) == [r["image_id"] for r in rows]  # the preview of the new set


def test_out_that_is_a_file_or_cannot_be_written_exits_2_naming_it(assets, tmp_path, capsys, monkeypatch):
    models = f"convnext={MODEL}@{assets['checkpoint']}"
    existing = tmp_path / "results.txt"
    existing.write_text("keep me\n")
    _exit_2_with_one_line(capsys, cli_args(models, assets["stimuli"], existing), "--out", str(existing), "is a file")
    assert existing.read_text() == "keep me\n"

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr("harmonization.files.tempfile.mkstemp", refuse)  # root ignores chmod: refuse the write
    _exit_2_with_one_line(
        capsys,
        cli_args(models, assets["stimuli"], tmp_path / "locked"),
        "cannot write",
        str(tmp_path / "locked"),
        "Permission denied",
    )


def test_a_full_disk_keeps_the_committed_batches_and_the_rerun_resumes(finished, assets, tmp_path, capsys, monkeypatch):
    from attacks_torch.cli import main
    from attacks_torch.sweep import store

    out = tmp_path / "full"
    folder = out / "convnext" / "l2_pgd"
    models = f"convnext={MODEL}@{assets['checkpoint']}"
    real = store.write_text

    def full_disk(path, text):
        if Path(path).name == "000004.csv":
            with atomic_write(path) as handle:
                handle.write(text[:20])
                raise OSError(errno.ENOSPC, "No space left on device")
        real(path, text)

    monkeypatch.setattr(store, "write_text", full_disk)
    _exit_2_with_one_line(
        capsys,
        cli_args(models, assets["stimuli"], out),
        "cannot write",
        str(folder / "batches" / "000004.csv"),
        "No space left on device",
    )
    assert sorted(p.name for p in (folder / "batches").iterdir()) == ["000000.csv"]  # no temporary file left
    stamp = (folder / "batches" / "000000.csv").stat().st_mtime_ns
    monkeypatch.setattr(store, "write_text", real)
    assert main(cli_args(models, assets["stimuli"], out, "--no-human-alignment")) == 0
    assert (folder / "batches" / "000000.csv").stat().st_mtime_ns == stamp
    expected = finished[0] / "convnext" / "l2_pgd" / "results.csv"
    assert (folder / "results.csv").read_bytes() == expected.read_bytes()


def test_bad_files_in_a_sweep_folder_are_named_or_recomputed(finished, assets, tmp_path, capsys):
    from attacks_torch.cli import main

    out, folder = _copy_interrupted(finished, tmp_path)
    models = f"convnext={MODEL}@{assets['checkpoint']}"
    batch = folder / "batches" / "000000.csv"
    good = batch.read_bytes()
    batch.write_text("model,image_id,label\nconvnext,stim-00000-of-00002.tfrecords:0,1\n")
    _exit_2_with_one_line(capsys, cli_args(models, assets["stimuli"], out), str(batch), "columns model,image_id,label")
    assert batch.read_text().startswith("model,image_id,label\n")  # left for the user to look at
    batch.write_bytes(b"")  # a sweep's own half-written file: computed again
    assert main(cli_args(models, assets["stimuli"], out, "--no-human-alignment")) == 0
    assert batch.read_bytes() == good
    expected = (finished[0] / "convnext" / "l2_pgd" / "results.csv").read_bytes()
    assert (folder / "results.csv").read_bytes() == expected
    summary = folder / "summary.json"
    summary.write_text('{"model": "convnext"}')
    _exit_2_with_one_line(capsys, cli_args(models, assets["stimuli"], out), str(summary), "missing key(s) spec")
    _exit_2_with_one_line(capsys, ["report", str(out), "--out", str(tmp_path / "report")], str(summary), "missing key")
    summary.write_bytes(b"\x00garbage")
    _exit_2_with_one_line(
        capsys, ["report", str(out), "--out", str(tmp_path / "report")], str(summary), "not a readable JSON file"
    )
    config = folder / "config.json"
    config.write_text("{not json")
    _exit_2_with_one_line(capsys, cli_args(models, assets["stimuli"], out), str(config), "not a readable JSON file")
    assert (folder / "results.csv").read_bytes() == expected


def test_a_garbage_map_file_is_named_by_the_report(finished, tmp_path, capsys):
    out = tmp_path / "copy"
    shutil.copytree(finished[0], out)
    (bad,) = [p for p in sorted((out / "convnext" / "l2_pgd" / "maps").glob("*.npy"))][:1]
    bad.write_bytes(b"not a numpy file")
    _exit_2_with_one_line(capsys, ["report", str(out), "--out", str(tmp_path / "report")], str(bad), ".npy")


def test_stimulus_labels_outside_the_model_classes_fail_that_model_before_any_attack(tmp_path):
    image, heatmap = np.full((32, 32, 3), 128, np.float32), np.ones((32, 32, 1), np.float32)
    write_records(
        tmp_path / "stim.tfrecords",
        [encode_example({"image": image.tobytes(), "heatmap": heatmap.tobytes(), "label": 3})],
    )
    config = SweepConfig(stimuli=str(tmp_path / "stim.tfrecords"), **{**FAST, "num_classes": 2})
    (outcome,) = run_sweep([ModelSpec("two", MODEL)], config, tmp_path / "out")
    assert outcome.status == "failed" and "labels go up to 3, but model 'two' has 2 classes" in outcome.error
    assert not (tmp_path / "out" / "two" / "l2_pgd" / "batches").exists()
