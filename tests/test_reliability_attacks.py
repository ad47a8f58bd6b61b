"""Issue #22, attack side: numbers that should not be accepted or printed (NaN where a measure is
undefined, exact ranks of huge integers, refused heads and images)."""

import numpy as np
import pytest
import torch
from scipy import stats

from attacks_torch.models import load_model
from attacks_torch.search import find_minimal
from harmonization import metrics


def test_dice_and_iou_are_nan_where_undefined_and_unchanged_elsewhere():
    rng = np.random.default_rng(0)
    saliency = rng.random((3, 8, 8))
    human = rng.random((3, 8, 8))
    human[0] = 0.0  # an all-zero human map: no top pixels
    saliency[1, 2, 3] = np.nan  # a NaN saliency
    for measure in (metrics.dice, metrics.iou):
        values = measure(saliency, human)
        assert np.isnan(values[0]) and np.isnan(values[1])
        top_s, top_h = (saliency[2] > np.percentile(saliency[2], 90)), (human[2] > np.percentile(human[2], 90))
        both, size = (top_s & top_h).sum(), top_s.sum() + top_h.sum()
        expected = 2 * both / size if measure is metrics.dice else both / (size - both)
        assert values[2] == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    "values",
    [
        np.array([2**53 + 1, 2**53 + 3, 2**53 + 2, 2**53 + 4], dtype=np.int64),
        np.array([2**64 - 1, 2**63, 2**63 + 1, 5], dtype=np.uint64),
        np.array([-(2**63), 0, -(2**63) + 1, 2**63 - 1], dtype=np.int64),
        np.array([10**30, 3 * 10**30, 2 * 10**30, 10**30 + 1], dtype=object),
    ],
)
def test_spearman_is_exact_for_integers_float64_cannot_hold(values):
    other = np.array([1.0, 4.0, 2.0, 3.0])
    # scipy on the integers' order, computed independently from Python's exact comparisons
    order = sorted(range(len(values)), key=lambda i: int(values[i]))
    ranks = np.empty(len(values))
    ranks[order] = np.arange(1, len(values) + 1)
    assert metrics.spearman(values, other)[0] == pytest.approx(stats.spearmanr(ranks, other).statistic, abs=1e-12)


def test_find_minimal_refuses_nan_images_instead_of_calling_them_misclassified():
    model = load_model("test_convnext", weights="random", num_classes=4, seed=0)
    images = torch.rand(3, 3, 32, 32)
    images[1, 0, 4, 4] = float("nan")
    with pytest.raises(ValueError, match=r"^images: 1 image\(s\) hold NaN or infinite pixels \(first at index 1\)"):
        find_minimal(model, images, torch.zeros(3, dtype=torch.int64), "l2_pgd", hi=1.0, tol=0.1)


@pytest.mark.parametrize("num_classes", [0, 1, -3, 2**40, 2.5, True])
def test_load_model_refuses_a_headless_or_absurd_head(num_classes):
    with pytest.raises(ValueError) as error:
        load_model("test_convnext", weights="random", num_classes=num_classes)
    assert "\n" not in str(error.value) and "num_classes must be an integer from 2" in str(error.value)
