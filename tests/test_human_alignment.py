"""Human alignment of PyTorch models (attacks_torch.human): the evaluation saliency of
``harmonize evaluate``, scored by the shared definition, in the library and in the sweep."""
from __future__ import annotations

import json

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
        images[i, :, top:top + side, left:left + side] += 0.6
        maps[i, top:top + side, left:left + side] = 1.0
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
        inputs = ((images[i:i + 1] - mean) / std).requires_grad_(True)
        logits = timm_model.network(inputs)
        for score, column in ((logits[0, labels[i]], result.spearman),
                              (torch.log_softmax(logits, 1)[0, labels[i]], result.spearman_log_prob)):
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
    singles = [human_alignment(model, images[i:i + 1], maps[i:i + 1], labels[i:i + 1]) for i in range(5)]
    for key in ("spearman", "spearman_log_prob", "dice", "iou"):
        np.testing.assert_allclose(getattr(batch, key), np.concatenate([getattr(s, key) for s in singles]),
                                   atol=1e-6, equal_nan=True)
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


def _write_keras_model_and_stimuli(directory) -> tuple[str, str]:
    """A .keras pixel model whose preprocess part normalises per channel (so the saliency's point,
    the preprocessed input, matters) and stimulus shards of clickme_arrays; returns both paths."""
    code = f"""
        import json, sys
        import numpy as np
        import keras
        sys.path.insert(0, {str(builders.ROOT / 'tests')!r})
        import builders
        from harmonization.clickme import encode_example, write_records
        from harmonization.models import build_model, split_pixel_model
        from harmonization.models.pixel import assemble, normalize
        keras.utils.set_random_seed(0)
        _, backbone = split_pixel_model(build_model("small_cnn_plain", 4, 32))
        model = assemble("norm_cnn", normalize((0.2, 0.5, 0.7), (0.1, 0.3, 0.6)), backbone, 32)
        model.save(sys.argv[1] + "/norm_cnn.keras")
        arrays = builders.clickme_arrays(n=6, size=32, seed=4)
        arrays["heatmap"][5] = 0.0  # no human map: not scored
        write_records(sys.argv[1] + "/stim-00000-of-00001.tfrecords", [
            encode_example({{"image": arrays["image"][i].tobytes(), "heatmap": arrays["heatmap"][i].tobytes(),
                            "label": int(arrays["label"][i])}}) for i in range(6)])
    """
    done = builders.run_python(code, env={"KERAS_BACKEND": "tensorflow"}, args=(str(directory),))
    assert done.returncode == 0, done.stderr[-3000:]
    return str(directory / "norm_cnn.keras"), str(directory / "stim-00000-of-00001.tfrecords")


def _keras_per_image_spearman(model_path: str, stimuli: str) -> list[float]:
    """``harmonize evaluate``'s per-image Spearman (evaluate_clickme on TensorFlow, in a subprocess),
    NaN for the image without a map."""
    code = f"""
        import json, sys
        import numpy as np
        import tensorflow as tf
        from attacks_torch.stimuli import load_stimuli
        from harmonization.evaluation import evaluate_clickme
        from harmonization.models.saved import load_saved_model
        stimuli = load_stimuli({stimuli!r})
        maps = stimuli.heatmaps.numpy()
        tokens = (maps.reshape(len(maps), -1).max(1) > 0).astype(np.float32)
        data = tf.data.Dataset.from_tensor_slices({{
            "image": stimuli.images.permute(0, 2, 3, 1).numpy() * 255.0, "heatmap": maps[..., None],
            "label": stimuli.labels.numpy(), "token": tokens}}).batch(4)
        result = evaluate_clickme(load_saved_model({model_path!r}), data)
        values = iter(result["per_image"]["spearman"].tolist())
        print(json.dumps([next(values) if token else None for token in tokens]))
    """
    done = builders.run_python(code, env={"KERAS_BACKEND": "tensorflow"})
    assert done.returncode == 0, done.stderr[-3000:]
    return [np.nan if v is None else v for v in json.loads(done.stdout.strip().splitlines()[-1])]


@pytest.fixture(scope="module")
def keras_files(tmp_path_factory):
    return _write_keras_model_and_stimuli(tmp_path_factory.mktemp("keras_human"))


def test_keras_pixel_model_equals_harmonize_evaluate(keras_files):
    model_path, stimuli = keras_files
    code = f"""
        import json
        from attacks_torch.human import human_alignment
        from attacks_torch.models import load_model
        from attacks_torch.stimuli import load_stimuli
        stimuli = load_stimuli({stimuli!r})
        result = human_alignment(load_model({model_path!r}), stimuli.images, stimuli.heatmaps, stimuli.labels)
        print(json.dumps([None if v != v else v for v in result.spearman.tolist()]))
    """
    done = builders.run_python(code, env={"KERAS_BACKEND": "torch"})
    assert done.returncode == 0, done.stderr[-3000:]
    torch_values = [np.nan if v is None else v for v in json.loads(done.stdout.strip().splitlines()[-1])]
    keras_values = _keras_per_image_spearman(model_path, stimuli)
    assert np.isnan(keras_values[5]) and np.isnan(torch_values[5])
    np.testing.assert_allclose(torch_values, keras_values, atol=1e-3, equal_nan=True)
