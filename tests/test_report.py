"""The report: every figure from a small finished sweep, statistics equal to scipy's, classes, pairs."""

import errno
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from builders import FAST_SWEEP as FAST
from builders import SWEEP_MODEL as MODEL
from builders import make_checkpoint, make_stimuli

from attacks_torch.report import build_report, load_results, pareto_front
from attacks_torch.sweep import ModelSpec, SweepConfig, SweepError, run_sweep
from harmonization.files import atomic_write

ZOO = [  # label, spec, class
    ("vgg16", "vgg16.tv_in1k", "CNN"),
    ("resnet50", "resnet50.a1_in1k", "CNN"),
    ("dla34", "dla34.in1k", "CNN"),
    ("mixnet_l", "mixnet_l.ft_in1k", "CNN"),
    ("vit_b16", "vit_base_patch16_224.augreg2_in21k_ft_in1k", "ViT"),
    ("deit_s", "deit_small_patch16_224.fb_in1k", "ViT"),
    ("swin_t", "swin_tiny_patch4_window7_224.ms_in1k", "ViT"),
    ("volo_d1", "volo_d1_224.sail_in1k", "hybrid"),
    ("maxvit_harmonized", "published:maxvit_tiny:/w/m.h5", "ViT"),
    ("harmonized_vit", "runs/harmonized_vit.keras", None),
]


def _write_synthetic_sweep(out: Path) -> dict:
    """summary.json files as the sweep writes them, for 9 models x 3 attacks, one failed model."""
    rng = np.random.default_rng(3)
    truth = {}
    for attack, norm in (("l2_pgd", "l2"), ("linf_pgd", "linf"), ("cw_l2", "l2")):
        for label, spec, _ in ZOO:
            folder = out / label / attack
            folder.mkdir(parents=True)
            values = {
                m: {
                    "mean": float(rng.uniform(0.1, 3)),
                    "sem": float(rng.uniform(0.01, 0.1)),
                    "count": 90,
                    "std": 0.5,
                    "median": 1.0,
                }
                for m in ("eps", "l2", "linf")
            }
            values["alignment"] = {
                "mean": float(rng.uniform(-0.2, 0.5)),
                "sem": 0.02,
                "count": 90,
                "std": 0.1,
                "median": 0.1,
            }
            summary = {
                "model": label,
                "spec": spec,
                "attack": attack,
                "norm": norm,
                "status": "done",
                "n_images": 100,
                "n_attacked": 90,
                "n_fooled": 90,
                "accuracy": 0.9,
                **values,
            }
            (folder / "summary.json").write_text(json.dumps(summary))
            truth[(label, attack)] = summary
    failed = out / "broken" / "l2_pgd"
    failed.mkdir(parents=True)
    (failed / "failed.json").write_text(
        json.dumps(
            {
                "model": "broken",
                "spec": "x",
                "attack": "l2_pgd",
                "status": "failed",
                "error_type": "OutOfMemoryError",
                "message": "CUDA out of memory",
            }
        )
    )
    (out / "pairs.csv").write_text("control,harmonized\nvit_b16,harmonized_vit\n")
    return truth


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    directory = tmp_path_factory.mktemp("synthetic")
    sweep = directory / "sweep"
    truth = _write_synthetic_sweep(sweep)
    accuracy = directory / "results-imagenet.csv"
    top1 = {spec: float(v) for (_, spec, _), v in zip(ZOO[:-1], np.linspace(70, 88, 8))}
    accuracy.write_text("model,top1,top5\n" + "".join(f"{k},{v},99\n" for k, v in top1.items()))
    report = build_report(sweep, directory / "report", accuracy_csv=accuracy)
    return sweep, truth, top1, report


@pytest.mark.compat
def test_statistics_equal_scipy_on_the_same_numbers(synthetic):
    _, truth, top1, report = synthetic
    computed = json.loads((report.parent / "statistics.json").read_text())
    classes = {label: arch or "ViT" for label, _, arch in ZOO}  # the harmonized ViT takes its control's class
    for attack, measure in (("l2_pgd", "l2"), ("linf_pgd", "linf"), ("cw_l2", "l2")):
        labels = [label for label, _, _ in ZOO]
        accuracy = [top1.get(spec, 90.0) for _, spec, _ in ZOO]  # not in the CSV: measured 0.9 -> 90 %
        tolerance = [truth[(label, attack)][measure]["mean"] for label in labels]
        alignment = [truth[(label, attack)]["alignment"]["mean"] for label in labels]
        got = computed[attack]
        for key, (x, y) in {
            "accuracy_vs_tolerance": (accuracy, tolerance),
            "accuracy_vs_alignment": (accuracy, alignment),
            "tolerance_vs_alignment": (tolerance, alignment),
        }.items():
            expected = stats.spearmanr(x, y)
            assert got[key]["rho"] == pytest.approx(expected.statistic, rel=1e-12)
            assert got[key]["p"] == pytest.approx(expected.pvalue, rel=1e-9)
            assert got[key]["n"] == len(ZOO)
        for key, values in (("tolerance_vit_vs_cnn", tolerance), ("alignment_vit_vs_cnn", alignment)):
            vit = [v for label, v in zip(labels, values) if classes[label] == "ViT"]
            cnn = [v for label, v in zip(labels, values) if classes[label] == "CNN"]
            expected = stats.ttest_ind(vit, cnn, equal_var=False)
            assert got[key]["t"] == pytest.approx(expected.statistic, rel=1e-12)
            assert got[key]["p"] == pytest.approx(expected.pvalue, rel=1e-9)
            assert got[key]["df"] == pytest.approx(expected.df, rel=1e-9)
    for attack in ("linf_pgd", "cw_l2"):
        for measure, column in (("tolerance", "linf" if attack == "linf_pgd" else "l2"), ("alignment", "alignment")):
            reference = [
                truth[(label, "l2_pgd")]["l2" if measure == "tolerance" else "alignment"]["mean"] for label, _, _ in ZOO
            ]
            other = [truth[(label, attack)][column]["mean"] for label, _, _ in ZOO]
            expected = stats.spearmanr(reference, other)
            assert computed[attack][f"{measure}_vs_l2_pgd"]["rho"] == pytest.approx(expected.statistic, rel=1e-12)


def test_every_figure_and_the_report_are_written(synthetic):
    _, _, _, report = synthetic
    out = report.parent
    figures = [
        f"{a}_{f}"
        for a in ("l2_pgd", "linf_pgd", "cw_l2")
        for f in ("accuracy_vs_tolerance", "accuracy_vs_alignment", "tolerance_vs_alignment")
    ]
    figures += [f"{a}_vs_l2_pgd_{m}" for a in ("linf_pgd", "cw_l2") for m in ("tolerance", "alignment")]
    for name in figures:
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert "<svg" in (out / f"{name}.svg").read_text()[:2000], name
    text = report.read_text()
    for name in figures:
        assert f"]({name}.png)" in text
    assert "| harmonized_vit | ViT | 90.00 | stimuli |" in text  # not in the CSV: measured on the stimuli
    assert "| volo_d1 | hybrid |" in text
    assert "| vgg16 | CNN | 70.00 | csv |" in text
    assert "## Failed models" in text and "OutOfMemoryError: CUDA out of memory" in text
    rho = json.loads((out / "statistics.json").read_text())["l2_pgd"]["accuracy_vs_tolerance"]["rho"]
    assert f"| Spearman accuracy vs tolerance | rho = {rho:.3f} |" in text


def test_classes_come_from_the_zoo_pairs_and_overrides(synthetic):
    sweep = synthetic[0]
    results, failed = load_results(sweep, pairs=[("vit_b16", "harmonized_vit")], arch_overrides={"dla34": "hybrid"})
    arch = {r.label: r.arch for r in results if r.attack == "l2_pgd"}
    assert arch == {**{label: a for label, _, a in ZOO if a}, "harmonized_vit": "ViT", "dla34": "hybrid"}
    assert [f["model"] for f in failed] == ["broken"]
    linf = next(r for r in results if r.attack == "linf_pgd" and r.label == "vgg16")
    assert linf.norm == "linf" and linf.tolerance == linf.linf  # the L-inf attack's tolerance is its L-inf norm


def test_pareto_front():
    x = [1.0, 2.0, 3.0, 2.5, 0.5, math.nan]
    y = [0.9, 0.5, 0.1, 0.05, 0.95, 2.0]
    assert pareto_front(x, y) == [4, 0, 1, 2]


def test_missing_sweep_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_report(tmp_path / "nothing", tmp_path / "report")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no finished model"):
        build_report(tmp_path / "empty", tmp_path / "report")
    with pytest.raises(SweepError, match="LABEL=CNN"):
        from attacks_torch.report import parse_arch_overrides

        parse_arch_overrides("a=transformer")


def test_report_on_a_small_real_sweep_with_panels(tmp_path):
    torch.set_num_threads(1)
    control = make_checkpoint(tmp_path, seed=0)
    stimuli = make_stimuli(tmp_path, control, n=4, shards=1)
    specs = [ModelSpec("control", MODEL, control), ModelSpec("harmonized", MODEL, make_checkpoint(tmp_path, seed=1))]
    outcomes = run_sweep(
        specs, SweepConfig(stimuli=stimuli, keep_maps=2, **FAST), tmp_path / "sweep", pairs=[("control", "harmonized")]
    )
    assert [o.status for o in outcomes] == ["done", "done"]
    out = tmp_path / "report"
    report = build_report(tmp_path / "sweep", out, panels=2)
    for name in ("accuracy_vs_tolerance", "accuracy_vs_alignment", "tolerance_vs_alignment", "panels"):
        assert (out / f"l2_pgd_{name}.png").stat().st_size > 1000
        assert (out / f"l2_pgd_{name}.svg").exists()
    assert "![l2_pgd panels](l2_pgd_panels.png)" in report.read_text()


def _write_four_class_sweep(sweep: Path, accuracy: dict[str, float]) -> dict:
    """l2_pgd summaries of 4-class models with the given stimulus accuracies; returns their measures."""
    rng = np.random.default_rng(5)
    truth = {}
    for label, acc in accuracy.items():
        values = {m: {"mean": float(rng.uniform(0.1, 3)), "sem": 0.01} for m in ("eps", "l2", "linf", "alignment")}
        truth[label] = values
        (sweep / label / "l2_pgd").mkdir(parents=True)
        (sweep / label / "l2_pgd" / "summary.json").write_text(
            json.dumps(
                {
                    "model": label,
                    "spec": "test_convnext",
                    "attack": "l2_pgd",
                    "norm": "l2",
                    "status": "done",
                    "n_images": 100,
                    "n_attacked": round(100 * acc),
                    "n_fooled": 50,
                    "accuracy": acc,
                    "num_classes": 4,
                    **values,
                }
            )
        )
    return truth


def test_a_model_at_chance_is_flagged_and_left_out_of_the_statistics(tmp_path):
    sweep = tmp_path / "sweep"
    accuracy = {"a": 0.9, "b": 0.8, "c": 0.95, "d": 0.7, "dead": 0.26}  # 4 classes: chance 0.25, threshold 0.4
    truth = _write_four_class_sweep(sweep, accuracy)
    (sweep / "pairs.csv").write_text("control,harmonized\na,dead\n")
    report = build_report(sweep, tmp_path / "report")
    computed = json.loads((tmp_path / "report" / "statistics.json").read_text())["l2_pgd"]
    assert list(computed["unreliable"]) == ["dead"] and "near chance" in computed["unreliable"]["dead"]
    alive = ["a", "b", "c", "d"]
    expected = stats.spearmanr([100 * accuracy[k] for k in alive], [truth[k]["l2"]["mean"] for k in alive])
    assert computed["accuracy_vs_tolerance"]["n"] == 4
    assert computed["accuracy_vs_tolerance"]["rho"] == pytest.approx(expected.statistic, rel=1e-12)
    text = report.read_text()
    assert "| dead | CNN | 26.00 | stimuli | 100 | 26 | 50 |" in text
    assert "no: accuracy 0.260 on the stimuli is near chance (0.250 for 4 classes; below 0.400)" in text
    assert "| a | CNN | 90.00 | stimuli | 100 | 90 | 50 |" in text and text.count("| yes |") == 4


def test_a_model_at_chance_gets_no_control_to_harmonized_arrow(tmp_path):
    from attacks_torch.report.figures import accuracy_point, scatter, tolerance_point

    sweep = tmp_path / "sweep"
    _write_four_class_sweep(sweep, {"a": 0.9, "b": 0.8, "c": 0.95, "dead": 0.26})
    results, _ = load_results(sweep)
    at = {r.label: accuracy_point(r)[0] for r in results}
    figure = scatter(
        results,
        accuracy_point,
        tolerance_point,
        "accuracy",
        "tolerance",
        "t",
        pairs=[("a", "dead"), ("dead", "c"), ("b", "c")],
    )
    arrows = [text for text in figure.axes[0].texts if getattr(text, "arrow_patch", None) is not None]
    # only b -> c: both pairs with the near-chance model are left out
    assert [(arrow.xyann[0], arrow.xy[0]) for arrow in arrows] == [(at["b"], at["c"])]


def test_report_out_that_is_a_file_or_a_full_disk_exits_2_keeping_what_was_written(tmp_path, capsys, monkeypatch):
    from attacks_torch import report as report_package
    from attacks_torch.cli import main

    sweep = tmp_path / "sweep"
    _write_four_class_sweep(sweep, {"a": 0.9, "b": 0.8})
    existing = tmp_path / "report.txt"
    existing.write_text("keep me\n")
    assert main(["report", str(sweep), "--out", str(existing)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(existing) in err[0] and "is a file" in err[0] and existing.read_text() == "keep me\n"

    out = tmp_path / "report"
    assert main(["report", str(sweep), "--out", str(out)]) == 0
    capsys.readouterr()
    figures = {p.name: p.read_bytes() for p in out.glob("*.png")}
    statistics = (out / "statistics.json").read_bytes()

    monkeypatch.setattr(report_package, "write_json", lambda path, data: _atomic_full(path))
    assert main(["report", str(sweep), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"cannot write {out / 'statistics.json'}: No space left on device" in err[0]
    assert (out / "statistics.json").read_bytes() == statistics  # the old file, whole
    assert {p.name: p.read_bytes() for p in out.glob("*.png")}.keys() == figures.keys()
    assert not list(out.glob(".tmp-*"))


def _atomic_full(path):
    with atomic_write(path) as handle:
        handle.write("{")
        raise OSError(errno.ENOSPC, "No space left on device")
