import numpy as np
import pytest
from scipy import stats

from harmonization import metrics


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.mark.compat
def test_spearman_matches_scipy_per_sample(rng):
    a = rng.normal(size=(20, 8, 8))
    b = a + rng.normal(size=(20, 8, 8))
    ours = metrics.spearman(a, b)
    expected = [stats.spearmanr(x.ravel(), y.ravel()).statistic for x, y in zip(a, b)]
    np.testing.assert_allclose(ours, expected, atol=1e-9)


def test_spearman_with_ties_matches_scipy(rng):
    a = rng.integers(0, 4, size=(10, 50)).astype(float)
    b = rng.integers(0, 3, size=(10, 50)).astype(float)
    expected = [stats.spearmanr(x, y).statistic for x, y in zip(a, b)]
    np.testing.assert_allclose(metrics.spearman(a, b), expected, atol=1e-9)


def test_spearman_constant_map_is_nan_with_warning(rng):
    a = rng.normal(size=(3, 16))
    a[1] = 5.0
    b = rng.normal(size=(3, 16))
    with pytest.warns(RuntimeWarning, match="constant"):
        rho = metrics.spearman(a, b)
    assert np.isnan(rho[1]) and np.isfinite(rho[[0, 2]]).all()


def test_spearman_nan_input_is_nan(rng):
    a = rng.normal(size=(2, 16))
    a[0, 3] = np.nan
    with pytest.warns(RuntimeWarning):
        rho = metrics.spearman(a, rng.normal(size=(2, 16)))
    assert np.isnan(rho[0]) and np.isfinite(rho[1])


def test_spearman_rejects_mismatched_shapes(rng):
    with pytest.raises(ValueError, match="sizes differ"):
        metrics.spearman(rng.normal(size=(2, 4)), rng.normal(size=(2, 5)))


def _reference_overlap(x, y, percentile):
    mx = x > np.percentile(x, 100 - percentile)
    my = y > np.percentile(y, 100 - percentile)
    inter = (mx & my).sum()
    return 2 * inter / (mx.sum() + my.sum()), inter / (mx | my).sum()


@pytest.mark.parametrize("percentile", [10, 25])
def test_dice_and_iou_match_direct_computation(rng, percentile):
    a = rng.normal(size=(6, 12, 12))
    b = a + rng.normal(size=(6, 12, 12))
    expected = np.array([_reference_overlap(x, y, percentile) for x, y in zip(a, b)])
    np.testing.assert_allclose(metrics.dice(a, b, percentile), expected[:, 0])
    np.testing.assert_allclose(metrics.iou(a, b, percentile), expected[:, 1])


def test_dice_identical_maps_is_one_and_constant_is_nan(rng):
    a = rng.normal(size=(2, 100))
    assert np.allclose(metrics.dice(a, a), 1.0)
    assert np.allclose(metrics.iou(a, a), 1.0)
    const = np.ones((1, 100))
    assert np.isnan(metrics.dice(const, const)[0])


def test_alignment_score_ignores_nan_and_divides_by_ceiling():
    assert metrics.alignment_score([0.2, np.nan, 0.4]) == pytest.approx(0.3 / 0.65753)
    assert np.isnan(metrics.alignment_score([np.nan]))


def test_summarize_matches_scipy(rng):
    v = rng.normal(size=50)
    v[[3, 7]] = np.nan
    s = metrics.summarize(v)
    clean = v[~np.isnan(v)]
    assert s["count"] == 48
    assert s["mean"] == pytest.approx(clean.mean())
    assert s["sem"] == pytest.approx(stats.sem(clean))
    assert s["std"] == pytest.approx(clean.std(ddof=1))
    assert s["median"] == pytest.approx(np.median(clean))
    assert metrics.summarize([np.nan])["count"] == 0


def test_model_correlation_matches_scipy(rng):
    x, y = rng.normal(size=30), rng.normal(size=30)
    y[4] = np.nan
    keep = ~np.isnan(y)
    expected = stats.spearmanr(x[keep], y[keep])
    out = metrics.model_correlation(x, y)
    assert out["rho"] == pytest.approx(expected.statistic)
    assert out["p"] == pytest.approx(expected.pvalue)
    assert out["n"] == 29


def test_model_correlation_constant_is_nan():
    assert np.isnan(metrics.model_correlation([1, 1, 1, 1], [1, 2, 3, 4])["rho"])


def test_compare_groups_matches_scipy_welch(rng):
    a, b = rng.normal(0, 1, size=20), rng.normal(0.5, 2, size=15)
    expected = stats.ttest_ind(a, b, equal_var=False)
    out = metrics.compare_groups(np.append(a, np.nan), b)
    assert out["t"] == pytest.approx(expected.statistic)
    assert out["p"] == pytest.approx(expected.pvalue)
    va, vb = a.var(ddof=1) / 20, b.var(ddof=1) / 15
    assert out["df"] == pytest.approx((va + vb) ** 2 / (va**2 / 19 + vb**2 / 14))
    assert np.isnan(metrics.compare_groups([1.0], b)["t"])


def test_gaussian_kernel_sums_to_one_and_is_symmetric():
    k = metrics.gaussian_kernel(10, 10.0)
    assert k.shape == (10, 10)
    assert k.sum() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(k, k.T)
    np.testing.assert_allclose(k, k[::-1, ::-1])
    from scipy.signal.windows import gaussian

    g = gaussian(10, 10.0)
    np.testing.assert_allclose(k, np.outer(g, g) / np.outer(g, g).sum(), rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.uint8, np.int64])
def test_spearman_fast_paths_match_scipy_with_ties_and_signs(rng, dtype):
    if dtype == np.float32:
        a = rng.normal(size=(40, 30, 30)).astype(np.float32)
        a[:, :5] = 0.0
        a[:, 5:8] = -0.0
        a[:, 8:12] = -1.5
        b = np.round(a + rng.normal(size=a.shape), 1).astype(np.float32)
    else:
        a = rng.integers(0, 8, size=(40, 30, 30)).astype(dtype)
        b = (a + rng.integers(0, 4, size=a.shape)).astype(dtype)
    expected = [stats.spearmanr(x.ravel(), y.ravel()).statistic for x, y in zip(a, b)]
    np.testing.assert_allclose(metrics.spearman(a, b), expected, atol=1e-9)


@pytest.mark.parametrize("rows_per_chunk", [1, 3, 16])
def test_spearman_every_tie_regime_matches_scipy_in_any_chunking(rng, rows_per_chunk):
    n = 400
    distinct = rng.permutation(n).astype(np.float32)
    few_ties = distinct.copy()
    few_ties[:10] = few_ties[0]
    mostly_ties = np.round(rng.random(n), 1).astype(np.float32)
    a = np.stack([distinct, few_ties, mostly_ties, mostly_ties[::-1], few_ties])
    b = np.stack([mostly_ties, distinct, few_ties, distinct, mostly_ties])
    expected = [stats.spearmanr(x, y).statistic for x, y in zip(a, b)]
    for first, second in ((a, b), (a.astype(np.float64), b.astype(np.float64))):
        ours = metrics.spearman(first, second, rows_per_chunk=rows_per_chunk)
        np.testing.assert_allclose(ours, expected, atol=1e-9)


def test_near_chance_marks_accuracies_close_to_one_over_the_class_count():
    from harmonization.metrics import chance_threshold, near_chance

    assert chance_threshold(4) == pytest.approx(0.25 + 0.2 * 0.75)
    assert near_chance(0.30, 4) and near_chance(0.25, 4) and near_chance(float("nan"), 4)
    assert not near_chance(0.41, 4) and not near_chance(0.95, 4)
    assert near_chance(0.15, 1000) and not near_chance(0.75, 1000)
    with pytest.raises(ValueError, match="num_classes"):
        chance_threshold(1)
