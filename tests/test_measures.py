"""Per-image perturbation measures against numpy and scipy, computed independently."""

import warnings

import numpy as np
import pytest
import torch
from scipy import stats

from attacks_torch.measures import perturbation_measures


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (5, 3, 12, 10)).astype(np.float32)
    adversarials = np.clip(images + rng.normal(0, 0.05, images.shape), 0, 1).astype(np.float32)
    heatmaps = rng.uniform(0, 1, (5, 12, 10)).astype(np.float32)
    fooled = np.array([True, True, False, True, True])
    return images, adversarials, heatmaps, fooled


def test_measures_match_numpy_and_scipy(batch):
    images, adversarials, heatmaps, fooled = batch
    result = perturbation_measures(images, adversarials, heatmaps, fooled)
    delta = (adversarials.astype(np.float64) - images).reshape(5, -1)
    np.testing.assert_allclose(result["l2"][fooled], np.linalg.norm(delta, axis=1)[fooled], rtol=1e-12)
    np.testing.assert_allclose(result["linf"][fooled], np.abs(delta).max(axis=1)[fooled], rtol=1e-12)
    mask = np.abs((adversarials.astype(np.float64) - images).mean(axis=1))
    expected = [stats.spearmanr(mask[i].ravel(), heatmaps[i].ravel()).statistic for i in np.flatnonzero(fooled)]
    np.testing.assert_allclose(result["alignment"][fooled], expected, atol=1e-9)
    for name in ("l2", "linf", "alignment"):
        assert np.isnan(result[name][~fooled]).all()


def test_alignment_is_one_for_a_perturbation_shaped_like_the_heatmap(batch):
    images, _, heatmaps, _ = batch
    images = np.full(images.shape, 0.5)
    adversarials = images + 0.1 * heatmaps[:, None].astype(np.float64)
    result = perturbation_measures(images, adversarials, heatmaps, np.ones(5, bool))
    np.testing.assert_allclose(result["alignment"], 1.0)


def test_torch_tensors_and_channel_heatmaps_are_accepted(batch):
    images, adversarials, heatmaps, fooled = batch
    from_numpy = perturbation_measures(images, adversarials, heatmaps, fooled)
    from_torch = perturbation_measures(
        torch.from_numpy(images),
        torch.from_numpy(adversarials),
        torch.from_numpy(heatmaps)[:, None],
        torch.from_numpy(fooled),
    )
    for name in from_numpy:
        np.testing.assert_allclose(from_torch[name], from_numpy[name])


def test_nothing_fooled_gives_all_nan_without_warnings(batch):
    images, adversarials, heatmaps, _ = batch
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = perturbation_measures(images, images, heatmaps, np.zeros(5, bool))
    assert all(np.isnan(values).all() for values in result.values())


def test_an_image_without_a_human_map_gets_no_alignment_and_no_warning(batch):
    images, adversarials, heatmaps, fooled = batch
    heatmaps = heatmaps.copy()
    heatmaps[1] = 0.0  # stored without a human map
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = perturbation_measures(images, adversarials, heatmaps, fooled)
    expected = perturbation_measures(images, adversarials, batch[2], fooled)
    assert np.isnan(result["alignment"][1]) and not np.isnan(result["l2"][1])
    keep = [0, 3, 4]
    np.testing.assert_array_equal(result["alignment"][keep], expected["alignment"][keep])


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda b: (b[0], b[1][:, :, :-1], b[2], b[3]), "images and adversarials"),
        (lambda b: (b[0], b[1], b[2][:, :-1], b[3]), "heatmaps"),
        (lambda b: (b[0], b[1], b[2], b[3][:-1]), "fooled"),
    ],
)
def test_mismatched_shapes_are_named(batch, change, message):
    with pytest.raises(ValueError, match=message):
        perturbation_measures(*change(batch))
