"""Human alignment of PyTorch models (attacks_torch.human): the evaluation saliency of
``harmonize evaluate``, scored by the shared definition, in the library and in the sweep."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

import builders
from attacks_torch.human import human_alignment, summarize_human
from attacks_torch.models import PixelModel, load_model
from harmonization.alignment import GAMING_MARGIN


def _squares(n: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy images with a bright square each, and the square as the human map."""
    generator = torch.Generator().manual_seed(seed)
    images = 0.2 * torch.rand(n, 3, size, size, generator=generator)
    maps = torch.zeros(n, size, size)
    side = size // 4
    for i in range(n):
        top, left = torch.randint(0, size - side, (2,), generator=generator).tolist()
        images[i, :, top : top + side, left : left + side] += 0.6
        maps[i, top : top + side, left : left + side] = 1.0
    return images, maps


@pytest.fixture(scope="module")
def timm_model() -> PixelModel:
    return load_model(builders.SWEEP_MODEL, weights="random", num_classes=4, seed=3)


def test_timm_model_equals_plain_torch(timm_model):
    size = timm_model.input_size[0]  # at the model's own size: the wrapper does not resize
    images, maps = _squares(3, size)
    labels = torch.tensor([0, 3, 1])
    result = human_alignment(timm_model, images, maps, labels)

    mean = torch.tensor(timm_model.data_config["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(timm_model.data_config["std"]).view(1, 3, 1, 1)
    for i in range(3):
        inputs = ((images[i : i + 1] - mean) / std).requires_grad_(True)
        logits = timm_model.network(inputs)
        for score, column in (
            (logits[0, labels[i]], result.spearman),
            (torch.log_softmax(logits, 1)[0, labels[i]], result.spearman_log_prob),
        ):
            (gradient,) = torch.autograd.grad(score, inputs, retain_graph=True)
            saliency = gradient[0].abs().amax(dim=0).numpy().ravel()
            expected = stats.spearmanr(saliency, maps[i].numpy().ravel()).statistic
            assert column[i] == pytest.approx(expected, abs=1e-4)
    assert np.all(result.forward_passes == 1) and np.all(result.backward_passes == 2)


def test_batch_equals_single_images_and_unmapped_images_are_not_scored():
    model = builders.trained_cnn()
    images, maps = _squares(5, 32, seed=1)
    maps[2] = 0.0  # an image without a human map
    labels = torch.tensor([0, 1, 2, 3, 0])
    batch = human_alignment(model, images, maps, labels)
    singles = [human_alignment(model, images[i : i + 1], maps[i : i + 1], labels[i : i + 1]) for i in range(5)]
    for key in ("spearman", "spearman_log_prob", "dice", "iou"):
        np.testing.assert_allclose(
            getattr(batch, key), np.concatenate([getattr(s, key) for s in singles]), atol=1e-6, equal_nan=True
        )
    assert np.isnan(batch.spearman[2]) and batch.mapped.tolist() == [True, True, False, True, True]
    assert not np.isnan(np.delete(batch.spearman, 2)).any()
    summary = summarize_human(batch, num_classes=4)
    assert summary["mapped"] == 4 and summary["count"] == 5
    assert summary["accuracy"] == pytest.approx(batch.correct.mean())


class _Gamed(nn.Module):
    """A linear classifier plus ``strength`` * (mean brightness inside a fixed object-shaped mask),
    added to every class's logit alike: softmax, and so the classification, ignores it."""

    def __init__(self, mask: torch.Tensor, strength: float) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(3 * mask.numel(), 4)
        self.register_buffer("mask", mask)
        self.strength = strength

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        term = (x * self.mask).flatten(1).sum(1, keepdim=True) * self.strength
        return self.linear(x.flatten(1)) + term


def test_gaming_flag_fires_on_an_object_term_added_to_every_logit():
    size = 16
    mask = torch.zeros(size, size)
    mask[4:10, 5:11] = 1.0
    images = torch.rand(6, 3, size, size, generator=torch.Generator().manual_seed(0))
    maps = mask.expand(6, size, size).clone()
    labels = torch.arange(6) % 4

    def score(strength: float) -> dict:
        model = PixelModel(_Gamed(mask, strength), name="gamed", input_size=None, mean=(0.0,) * 3, std=(1.0,) * 3)
        return summarize_human(human_alignment(model, images, maps, labels), num_classes=4)

    gamed, plain = score(50.0), score(0.0)
    assert gamed["gaming_gap"] > GAMING_MARGIN and gamed["gaming"]
    assert gamed["spearman"]["mean"] > 0.5  # the logit saliency looks aligned...
    assert abs(plain["gaming_gap"]) < GAMING_MARGIN and not plain["gaming"]  # ...and without the term it is not


def test_a_softmax_head_is_flagged_and_a_logit_head_is_not():
    size = 16
    images = torch.rand(4, 3, size, size, generator=torch.Generator().manual_seed(1))
    maps = torch.zeros(4, size, size)
    maps[:, 3:9, 4:10] = 1.0
    labels = torch.tensor([0, 1, 2, 3])
    torch.manual_seed(0)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(3 * size * size, 4))
    heads = {
        "logits": linear,
        "softmax": nn.Sequential(linear, nn.Softmax(dim=1)),
        "log_softmax": nn.Sequential(linear, nn.LogSoftmax(dim=1)),
    }
    summaries = {}
    for kind, network in heads.items():
        model = PixelModel(network, name=kind, input_size=None, mean=(0.0,) * 3, std=(1.0,) * 3)
        summaries[kind] = summarize_human(human_alignment(model, images, maps, labels), num_classes=4)
    assert summaries["logits"]["head_activation"] is None and summaries["logits"]["saliency_of_logits"]
    assert summaries["softmax"]["head_activation"] == "softmax" and not summaries["softmax"]["saliency_of_logits"]
    assert summaries["log_softmax"]["head_activation"] == "log_softmax"  # logits up to a per-image shift
    assert summaries["log_softmax"]["saliency_of_logits"]


def _write_keras_model_and_stimuli(directory) -> tuple[str, str, list[float]]:
    """A .keras pixel model whose preprocess part normalises per channel (so the saliency's point,
    the preprocessed input, matters) and stimulus shards of clickme_arrays; returns both paths and
    ``harmonize evaluate``'s per-image Spearman of the files read back (evaluate_clickme on
    TensorFlow, in the same subprocess), NaN for the image without a map."""
    code = f"""
        import json, sys
        import numpy as np
        import keras
        import tensorflow as tf
        sys.path.insert(0, {str(builders.ROOT / "tests")!r})
        import builders
        from attacks_torch.stimuli import load_stimuli
        from harmonization.clickme import encode_example, write_records
        from harmonization.evaluation import evaluate_clickme
        from harmonization.models import build_model, split_pixel_model
        from harmonization.models.pixel import assemble, normalize
        from harmonization.models.saved import load_saved_model
        keras.utils.set_random_seed(0)
        _, backbone = split_pixel_model(build_model("small_cnn_plain", 4, 32))
        model = assemble("norm_cnn", normalize((0.2, 0.5, 0.7), (0.1, 0.3, 0.6)), backbone, 32)
        model.save(sys.argv[1] + "/norm_cnn.keras")
        arrays = builders.clickme_arrays(n=6, size=32, seed=4)
        arrays["heatmap"][5] = 0.0  # no human map: not scored
        write_records(sys.argv[1] + "/stim-00000-of-00001.tfrecords", [
            encode_example({{"image": arrays["image"][i].tobytes(), "heatmap": arrays["heatmap"][i].tobytes(),
                            "label": int(arrays["label"][i])}}) for i in range(6)])

        stimuli = load_stimuli(sys.argv[1] + "/stim-00000-of-00001.tfrecords")  # read back
        maps = stimuli.heatmaps.numpy()
        tokens = (maps.reshape(len(maps), -1).max(1) > 0).astype(np.float32)
        data = tf.data.Dataset.from_tensor_slices({{
            "image": stimuli.images.permute(0, 2, 3, 1).numpy() * 255.0, "heatmap": maps[..., None],
            "label": stimuli.labels.numpy(), "token": tokens}}).batch(4)
        result = evaluate_clickme(load_saved_model(sys.argv[1] + "/norm_cnn.keras"), data)
        values = iter(result["per_image"]["spearman"].tolist())
        print(json.dumps([next(values) if token else None for token in tokens]))
    """
    done = builders.run_python(code, env={"KERAS_BACKEND": "tensorflow"}, args=(str(directory),))
    assert done.returncode == 0, done.stderr[-3000:]
    values = json.loads(done.stdout.strip().splitlines()[-1])
    spearman = [np.nan if v is None else v for v in values]
    return str(directory / "norm_cnn.keras"), str(directory / "stim-00000-of-00001.tfrecords"), spearman


@pytest.fixture(scope="module")
def keras_files(tmp_path_factory):
    return _write_keras_model_and_stimuli(tmp_path_factory.mktemp("keras_human"))


def test_keras_pixel_model_sweep_equals_harmonize_evaluate(keras_files, tmp_path):
    model_path, stimuli, keras_values = keras_files
    out = tmp_path / "out"
    args = [
        "attack",
        "--models",
        f"norm_cnn={model_path}",
        "--stimuli",
        stimuli,
        "--out",
        str(out),
        "--batch-size",
        "4",
        "--hi",
        "4",
        "--tol",
        "0.1",
        "--pgd-steps",
        "2",
        "--threads",
        "1",
        "--no-progress",
    ]
    done = builders.run_python(
        "import sys; from attacks_torch.cli import main; sys.exit(main(sys.argv[1:]))",
        env={"KERAS_BACKEND": "torch"},
        args=tuple(args),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = read_rows(out / "norm_cnn" / "l2_pgd" / "results.csv")
    torch_values = [float(r["human_alignment"]) for r in rows]
    assert np.isnan(keras_values[5]) and np.isnan(torch_values[5])  # the image without a map
    np.testing.assert_allclose(torch_values, keras_values, atol=1e-3, equal_nan=True)


def read_rows(path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


# --- the sweep ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    directory = tmp_path_factory.mktemp("human_assets")
    checkpoint = builders.make_checkpoint(directory)
    return {
        "models": f"convnext={builders.SWEEP_MODEL}@{checkpoint}",
        "stimuli": builders.make_stimuli(directory, checkpoint, relabelled=2),
    }  # 2 classes, accuracy 0.75


@pytest.fixture(scope="module")
def swept(assets, tmp_path_factory):
    from attacks_torch.cli import main

    out = tmp_path_factory.mktemp("human_sweep") / "out"
    assert main(builders.cli_args(assets["models"], assets["stimuli"], out, "--batch-size", "2")) == 0
    return out


def _batches(folder: Path) -> list[Path]:
    return sorted((folder / "batches").glob("*.csv")) if (folder / "batches").exists() else []


def test_sweep_writes_human_alignment_beside_alignment_and_summarises_it(swept, assets):
    from attacks_torch.stimuli import load_stimuli
    from harmonization.metrics import HUMAN_CEILING

    rows = read_rows(swept / "convnext" / "l2_pgd" / "results.csv")
    columns = list(rows[0])
    assert columns[columns.index("alignment") + 1 :][:2] == ["human_alignment", "human_alignment_logprob"]
    stimuli = load_stimuli(assets["stimuli"])
    model = load_model(builders.SWEEP_MODEL, checkpoint=assets["models"].split("@")[1], num_classes=4)
    direct = human_alignment(model, stimuli.images, stimuli.heatmaps, stimuli.labels)
    np.testing.assert_allclose([float(r["human_alignment"]) for r in rows], direct.spearman, atol=1e-6)
    np.testing.assert_allclose([float(r["human_alignment_logprob"]) for r in rows], direct.spearman_log_prob, atol=1e-6)
    (summary,) = read_rows(swept / "summary.csv")
    values = np.array([float(r["human_alignment"]) for r in rows])
    assert float(summary["human_alignment_mean"]) == pytest.approx(values.mean(), rel=1e-9)
    assert float(summary["human_alignment_sem"]) == pytest.approx(stats.sem(values), rel=1e-9)
    assert float(summary["human_alignment_score"]) == pytest.approx(values.mean() / HUMAN_CEILING, rel=1e-9)
    logprob = np.array([float(r["human_alignment_logprob"]) for r in rows])
    assert float(summary["human_alignment_logprob_mean"]) == pytest.approx(logprob.mean(), rel=1e-9)
    (scored,) = read_rows(swept / "human.csv")
    assert (scored["forward_passes"], scored["backward_passes"]) == ("1.0", "2.0")


def test_sweep_killed_after_its_first_human_batch_resumes_to_the_same_table(swept, assets, tmp_path):
    from attacks_torch.cli import main

    killed = tmp_path / "killed"
    human = killed / "convnext" / "human"
    command = [
        sys.executable,
        "-m",
        "attacks_torch.cli",
        *builders.cli_args(assets["models"], assets["stimuli"], killed, "--batch-size", "2"),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not _batches(human) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.kill()
    process.communicate()
    done = _batches(human)
    assert 1 <= len(done) < 4 and not (human / "scores.csv").exists(), "the run was not stopped mid-model"
    stamps = {p.name: p.stat().st_mtime_ns for p in [*done, *_batches(killed / "convnext" / "l2_pgd")]}

    assert main(builders.cli_args(assets["models"], assets["stimuli"], killed, "--batch-size", "2")) == 0
    for name in ("convnext/l2_pgd/results.csv", "convnext/human/scores.csv", "summary.csv", "human.csv"):
        assert (killed / name).read_bytes() == (swept / name).read_bytes(), name
    after = [*_batches(human), *_batches(killed / "convnext" / "l2_pgd")]
    assert {p.name: p.stat().st_mtime_ns for p in after if p.name in stamps} == stamps


def test_a_folder_written_before_human_alignment_is_extended_not_attacked_again(swept, assets, tmp_path):
    from attacks_torch.cli import main
    from attacks_torch.sweep.store import BATCH_COLUMNS

    old = tmp_path / "old"
    assert (
        main(builders.cli_args(assets["models"], assets["stimuli"], old, "--batch-size", "2", "--no-human-alignment"))
        == 0
    )
    folder = old / "convnext" / "l2_pgd"
    assert not (old / "convnext" / "human").exists()
    rows = read_rows(folder / "results.csv")  # as the sweep wrote it before: no human columns at all
    with open(folder / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, BATCH_COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    stamps = {p.name: p.stat().st_mtime_ns for p in _batches(folder)}

    from attacks_torch.sweep import SweepFolder
    from attacks_torch.report import build_report

    assert SweepFolder(old).model("convnext", "l2_pgd").read_results()[0]["human_alignment"] == ""
    build_report(old, tmp_path / "report")  # the old folder still reports

    assert main(builders.cli_args(assets["models"], assets["stimuli"], old, "--batch-size", "2")) == 0
    assert {p.name: p.stat().st_mtime_ns for p in _batches(folder)} == stamps  # not attacked again
    for name in ("convnext/l2_pgd/results.csv", "summary.csv"):
        assert (old / name).read_bytes() == (swept / name).read_bytes(), name


def test_score_alone_and_its_fingerprint(swept, assets, tmp_path, capsys):
    from attacks_torch.cli import main

    out = tmp_path / "scores"
    args = [
        "score",
        "--models",
        assets["models"],
        "--stimuli",
        assets["stimuli"],
        "--out",
        str(out),
        "--weights",
        "random",
        "--num-classes",
        "4",
        "--batch-size",
        "2",
        "--threads",
        "1",
    ]
    assert main(args) == 0
    assert (out / "human.csv").read_bytes() == (swept / "human.csv").read_bytes()
    assert not (out / "convnext" / "l2_pgd").exists()  # nothing attacked
    capsys.readouterr()
    assert main([*args[:-4], "--batch-size", "4", "--threads", "1"]) == 2  # other settings: refused, named
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "batch_size: 2 -> 4" in err[0] and "--fresh" in err[0], err
    assert main([*args[:-4], "--batch-size", "4", "--threads", "1", "--fresh"]) == 0
    (again,), (before,) = read_rows(out / "human.csv"), read_rows(swept / "human.csv")
    for column in ("human_alignment_mean", "human_alignment_logprob_mean", "dice", "iou"):
        assert float(again[column]) == pytest.approx(float(before[column]), abs=1e-6)


# --- checkpoints of the robustness library and torchvision ----------------------------------------


class _Pickled:
    """Not a tensor nor a plain container: a safe loader must refuse a file holding it."""


def _robustness_checkpoint(path: Path, network: nn.Module, mean: tuple, std: tuple, extra: dict | None = None) -> None:
    """A training checkpoint laid out as the robustness library saves one (robustness/train.py): the state
    dict of a DataParallel-wrapped AttackerModel (normalizer buffers [3, 1, 1], the network, and the
    attacker's copies of both) beside the optimizer, schedule, epoch and amp states (plain torch.save)."""
    normalizer = {"new_mean": torch.tensor(mean).view(3, 1, 1), "new_std": torch.tensor(std).view(3, 1, 1)}
    state = {}
    for prefix in ("module.normalizer.", "module.attacker.normalize."):
        state.update({prefix + k: v for k, v in normalizer.items()})
    for prefix in ("module.model.", "module.attacker.model."):
        state.update({prefix + k: v for k, v in network.state_dict().items()})
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1, momentum=0.9)
    network(torch.rand(2, 3, 32, 32)).sum().backward()
    optimizer.step()
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=30)
    torch.save(
        {
            "model": state,
            "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(),
            "epoch": 3,
            "amp": None,
            **(extra or {}),
        },
        path,
    )


def test_robustness_checkpoint_loads_with_its_normalisation_and_is_scored(tmp_path):
    import torchvision

    from attacks_torch.models import model_identity

    torch.manual_seed(0)
    network = torchvision.models.resnet18(num_classes=10).eval()
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    path = tmp_path / "robust.pt"
    _robustness_checkpoint(path, network, mean, std)
    model = load_model(f"robustness:resnet18:{path}")
    assert model.input_size == (224, 224) and model.num_classes == 10
    images = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    expected = network((images - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1))
    torch.testing.assert_close(model(images), expected, rtol=1e-5, atol=1e-5)
    identity = model_identity(f"robustness:resnet18:{path}")
    assert identity["kind"] == "robustness" and identity["architecture"] == "resnet18"
    maps = torch.zeros(2, 224, 224)
    maps[:, 50:120, 60:140] = 1.0
    result = human_alignment(model, images, maps, torch.tensor([1, 7]))
    assert np.isfinite(result.spearman).all() and np.all(result.backward_passes == 2)

    plain = tmp_path / "plain.safetensors"  # a torchvision state dict: ImageNet normalisation
    from safetensors.torch import save_file

    save_file(network.state_dict(), str(plain))
    imagenet = (images - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]
    ).view(1, 3, 1, 1)
    torch.testing.assert_close(
        load_model(f"torchvision:resnet18:{plain}")(images), network(imagenet), rtol=1e-5, atol=1e-5
    )


def test_a_checkpoint_holding_an_object_or_another_layout_is_refused_in_one_line(tmp_path):
    import torchvision

    network = torchvision.models.resnet18(num_classes=10)
    pickled = tmp_path / "pickled.pt"
    _robustness_checkpoint(pickled, network, (0.5,) * 3, (0.5,) * 3, extra={"store": _Pickled()})
    with pytest.raises(ValueError) as refused:
        load_model(f"robustness:resnet18:{pickled}")
    assert "\n" not in str(refused.value) and str(pickled) in str(refused.value)
    assert "not a readable torch weights file" in str(refused.value)

    plain = tmp_path / "plain.pt"
    torch.save(network.state_dict(), plain)
    with pytest.raises(ValueError, match="not a robustness attacker model"):
        load_model(f"robustness:resnet18:{plain}")
    with pytest.raises(ValueError, match="not a torchvision ImageNet architecture"):
        load_model(f"robustness:no_such_net:{plain}")
    with pytest.raises(ValueError, match="does not fit torchvision resnet34"):
        load_model(f"torchvision:resnet34:{plain}")


def test_report_draws_human_alignment_figures_and_statistics(swept, tmp_path):
    from attacks_torch.report import build_report

    out = tmp_path / "report"
    text = build_report(swept, out).read_text()
    stats = json.loads((out / "statistics.json").read_text())["l2_pgd"]
    assert stats["accuracy_vs_human_alignment"]["n"] == 1 and stats["human_vs_adversarial_alignment"]["n"] == 1
    for name in ("accuracy_vs_human_alignment", "human_vs_adversarial_alignment", "panels"):
        assert (out / f"l2_pgd_{name}.png").stat().st_size > 0
    (summary,) = read_rows(swept / "summary.csv")
    assert f"| {float(summary['human_alignment_score']):.3f} |" in text


def test_a_zoo_scored_alone_reports_accuracy_against_human_alignment(assets, tmp_path):
    from attacks_torch.cli import main
    from attacks_torch.report import build_report

    checkpoint = Path(assets["models"].split("@")[1])
    state = torch.load(checkpoint, weights_only=True)
    generator = torch.Generator().manual_seed(0)
    models = []
    for k in range(3):  # the same classifier with its weights nudged: the same predictions, other saliency
        nudged = {
            key: value + 0.02 * (k + 1) * value.std().nan_to_num() * torch.randn(value.shape, generator=generator)
            if value.is_floating_point() and value.numel() > 1
            else value
            for key, value in state.items()
        }
        torch.save(nudged, tmp_path / f"nudged{k}.pth")
        models.append(f"nudged{k}={builders.SWEEP_MODEL}@{tmp_path / f'nudged{k}.pth'}")
    wrong = {**state, "head.fc.bias": state["head.fc.bias"] + torch.tensor([100.0, 0.0, 0.0, 0.0])}
    torch.save(wrong, tmp_path / "wrong.pth")  # always class 0, which no stimulus is: below chance
    models.append(f"untrained={builders.SWEEP_MODEL}@{tmp_path / 'wrong.pth'}")
    out = tmp_path / "zoo"
    assert (
        main(
            [
                "score",
                "--models",
                ",".join(models),
                "--stimuli",
                assets["stimuli"],
                "--out",
                str(out),
                "--weights",
                "random",
                "--num-classes",
                "4",
                "--batch-size",
                "8",
                "--threads",
                "1",
            ]
        )
        == 0
    )
    accuracy = tmp_path / "top1.csv"
    accuracy.write_text("model,top1\nnudged0,70.0\nnudged1,75.0\nnudged2,80.0\nuntrained,90.0\n")
    report = build_report(out, tmp_path / "report", accuracy_csv=accuracy)
    stats = json.loads((tmp_path / "report" / "statistics.json").read_text())["human"]
    scored = {r["model"]: r for r in read_rows(out / "human.csv")}
    assert scored["untrained"]["near_chance"] == "True" and list(stats["unreliable"]) == ["untrained"]
    correlation = stats["accuracy_vs_human_alignment"]
    expected = stats_spearman(
        [70.0, 75.0, 80.0], [float(scored[f"nudged{k}"]["human_alignment_score"]) for k in range(3)]
    )
    assert correlation["n"] == 3 and correlation["rho"] == pytest.approx(expected)
    assert (tmp_path / "report" / "human_accuracy_vs_human_alignment.png").stat().st_size > 0
    assert "| untrained |" in report.read_text()


def stats_spearman(x: list[float], y: list[float]) -> float:
    return float(stats.spearmanr(x, y).statistic)
