"""The harmonization term against the published formulas (numpy / scipy references)."""

import numpy as np
import pytest
from scipy import signal

import builders  # noqa: F401  (loads harmonization before TensorFlow)
import keras
import tensorflow as tf

from harmonization.loss import decayed_variables, harmonization_loss, pyramid, standardize_cut, weight_decay

KERNEL = np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1]) / 256.0


def reference_standardize_cut(maps):
    mean = maps.mean(axis=(1, 2), keepdims=True)
    std = maps.std(axis=(1, 2), keepdims=True)  # population std (ddof=0)
    return np.maximum((maps - mean) / (std + 1e-5), 0)


def reference_downsample(image):
    """TensorFlow's SAME padding for a 5x5 window at stride 2, then scipy correlation."""
    size = image.shape[0]
    out = -(-size // 2)
    total = max((out - 1) * 2 + 5 - size, 0)
    padded = np.pad(image, ((total // 2, total - total // 2),) * 2)
    return signal.correlate2d(padded, KERNEL, mode="valid")[::2, ::2]


def reference_loss(saliency, heatmaps, tokens, levels=5):
    s = reference_standardize_cut(saliency)
    h = reference_standardize_cut(heatmaps)
    h = h / (h.max(axis=(1, 2), keepdims=True) + 1e-6) * (s.max(axis=(1, 2), keepdims=True) + 1e-6)
    total = 0.0
    for _ in range(levels):
        total += np.mean((s - h) ** 2 * tokens[:, None, None])
        s = np.stack([reference_downsample(m) for m in s])
        h = np.stack([reference_downsample(m) for m in h])
    return total / levels


def random_maps(shape, seed):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def test_standardize_cut_matches_population_std_formula():
    maps = random_maps((3, 9, 7), 0) * 5 + 2
    np.testing.assert_allclose(standardize_cut(maps).numpy(), reference_standardize_cut(maps), rtol=1e-5, atol=1e-6)


def test_pyramid_levels_of_a_224_map():
    levels = pyramid(tf.zeros((2, 224, 224, 1)), 5)
    assert [level.shape[1] for level in levels] == [224, 112, 56, 28, 14]
    assert all(level.shape == (2, s, s, 1) for level, s in zip(levels, [224, 112, 56, 28, 14]))
    assert [level.shape[1] for level in pyramid(tf.zeros((1, 224, 224)), 6)] == [224, 112, 56, 28, 14, 7]


@pytest.mark.parametrize("size", [16, 15])
def test_pyramid_is_a_binomial_blur_at_stride_two(size):
    maps = random_maps((2, size, size), 1)
    levels = pyramid(maps, 3)
    expected = maps
    for level in levels[1:]:
        expected = np.stack([reference_downsample(m) for m in expected])
        np.testing.assert_allclose(level.numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.compat
def test_harmonization_loss_matches_the_formula_with_tokens():
    saliency, heatmaps = random_maps((3, 32, 32), 2), np.abs(random_maps((3, 32, 32), 3))
    tokens = np.array([1.0, 0.0, 1.0], np.float32)
    value = harmonization_loss(saliency, heatmaps[..., None], tokens).numpy()
    np.testing.assert_allclose(value, reference_loss(saliency, heatmaps, tokens), rtol=1e-5)


def test_mean_runs_over_the_whole_batch():
    saliency, heatmaps = random_maps((2, 16, 16), 4), np.abs(random_maps((2, 16, 16), 5))
    alone = harmonization_loss(saliency[:1], heatmaps[:1], np.ones(1)).numpy()
    padded = harmonization_loss(saliency, heatmaps, np.array([1.0, 0.0])).numpy()
    np.testing.assert_allclose(padded, alone / 2, rtol=1e-6)


def test_zero_tokens_give_zero_loss():
    saliency, heatmaps = random_maps((4, 16, 16), 6), np.abs(random_maps((4, 16, 16), 7))
    assert harmonization_loss(saliency, heatmaps, np.zeros(4)).numpy() == 0.0


@pytest.mark.parametrize("kind", ["zero", "constant"])
def test_flat_maps_give_finite_loss_and_gradient(kind):
    fill = 0.0 if kind == "zero" else 3.5
    flat = np.full((2, 16, 16), fill, np.float32)
    other = np.abs(random_maps((2, 16, 16), 8))
    for saliency, heatmaps in [(flat, other), (other, flat), (flat, flat)]:
        saliency = tf.Variable(saliency)
        with tf.GradientTape() as tape:
            value = harmonization_loss(saliency, heatmaps, np.ones(2))
        gradient = tape.gradient(value, saliency)
        assert np.isfinite(value.numpy())
        assert np.isfinite(gradient.numpy()).all()


@pytest.mark.parametrize("scale", [1e-3, 7.0, 255.0])
def test_loss_is_invariant_to_the_heatmap_scale(scale):
    saliency, heatmaps = random_maps((3, 24, 24), 9), np.abs(random_maps((3, 24, 24), 10))
    base = harmonization_loss(saliency, heatmaps, np.ones(3)).numpy()
    scaled = harmonization_loss(saliency, heatmaps * scale, np.ones(3)).numpy()
    np.testing.assert_allclose(scaled, base, rtol=1e-5)


def test_maps_of_different_sizes_are_refused():
    with pytest.raises(ValueError, match="differ in size"):
        harmonization_loss(tf.zeros((1, 16, 16)), tf.zeros((1, 8, 8)), tf.ones(1))
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        harmonization_loss(tf.zeros((1, 16, 16, 3)), tf.zeros((1, 16, 16, 3)), tf.ones(1))


def test_weight_decay_skips_normalization_and_embedding_variables():
    inputs = keras.Input((6,), dtype="int32")
    x = keras.layers.Embedding(10, 4, name="token_embed")(inputs)
    x = keras.layers.LayerNormalization(name="ln_norm")(x)
    x = keras.layers.Dense(3, name="proj")(x)
    x = keras.layers.BatchNormalization(name="head_bn")(x)
    model = keras.Model(inputs, x)
    kept = decayed_variables(model.trainable_variables)
    assert sorted(v.path for v in kept) == ["proj/bias", "proj/kernel"]
    expected = sum(0.5 * np.sum(np.square(v.numpy())) for v in kept)
    np.testing.assert_allclose(weight_decay(kept).numpy(), expected, rtol=1e-6)
