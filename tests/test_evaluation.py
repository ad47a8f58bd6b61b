"""ClickMe evaluation: saliency, Spearman / Dice / IoU against scipy and closed forms; gaming."""

import numpy as np
import pytest
from scipy import stats

from builders import as_dataset
import keras
import tensorflow as tf

from harmonization import metrics
from harmonization.evaluation import GAMING_MARGIN, evaluate_clickme
from harmonization.saliency import saliency_of, signed_saliency

SIZE, CLASSES = 8, 3
MEAN, STD = np.array([10.0, 20.0, 30.0]), np.array([2.0, 4.0, 8.0])


def pixel_model(preprocess: list, backbone: keras.Model) -> keras.Model:
    pixels = keras.Input((SIZE, SIZE, 3))
    preprocess = keras.Sequential([keras.Input((SIZE, SIZE, 3)), *preprocess], name="preprocess")
    return keras.Model(pixels, backbone(preprocess(pixels)))


def linear_backbone(kernel: np.ndarray, bias: np.ndarray, name: str = "backbone") -> keras.Model:
    inputs = keras.Input((SIZE, SIZE, 3))
    dense = keras.layers.Dense(kernel.shape[1])
    outputs = dense(keras.layers.Flatten()(inputs))
    dense.set_weights([kernel, bias])
    return keras.Model(inputs, outputs, name=name)


def arrays(n: int = 10, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    heatmaps = rng.uniform(0, 1, (n, SIZE, SIZE, 1)).astype(np.float32)
    heatmaps[:, 2:6, 2:6] += 2.0  # an object in the middle
    return {
        "image": rng.uniform(0, 255, (n, SIZE, SIZE, 3)).astype(np.float32),
        "heatmap": heatmaps,
        "label": rng.integers(0, CLASSES, n).astype(np.int64),
        "token": np.ones(n, np.float32),
    }


def test_linear_model_matches_closed_form_saliency_and_scipy_statistics():
    rng = np.random.default_rng(1)
    kernel = rng.normal(size=(SIZE * SIZE * 3, CLASSES)).astype(np.float32)
    bias = rng.normal(size=CLASSES).astype(np.float32)
    model = pixel_model(
        [keras.layers.Normalization(mean=list(MEAN), variance=list(STD**2))], linear_backbone(kernel, bias)
    )
    data = arrays()
    data["token"][[2, 7]] = 0.0  # no human map: counted for accuracy only
    result = evaluate_clickme(model, as_dataset(data, 4))

    inputs = ((data["image"] - MEAN) / STD).reshape(len(data["image"]), -1)
    logits = inputs @ kernel + bias
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    columns = kernel.T[data["label"]]  # d logit_y / d preprocessed input
    log_prob_grads = columns - probs @ kernel.T  # d log p_y / d preprocessed input

    def as_maps(g):
        return np.abs(g).reshape(-1, SIZE, SIZE, 3).max(-1)

    mapped = data["token"] > 0
    heat = data["heatmap"][mapped, ..., 0]
    expected = [stats.spearmanr(s.ravel(), h.ravel()).statistic for s, h in zip(as_maps(columns)[mapped], heat)]
    expected_log_prob = [
        stats.spearmanr(s.ravel(), h.ravel()).statistic for s, h in zip(as_maps(log_prob_grads)[mapped], heat)
    ]

    assert result["count"] == 10 and result["mapped"] == 8
    np.testing.assert_allclose(result["per_image"]["spearman"], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result["per_image"]["spearman_log_prob"], expected_log_prob, rtol=1e-4, atol=1e-5)
    assert result["accuracy"] == pytest.approx((logits.argmax(1) == data["label"]).mean())
    assert result["alignment_score"] == pytest.approx(np.mean(expected) / metrics.HUMAN_CEILING, rel=1e-5)
    assert result["spearman"]["sem"] == pytest.approx(stats.sem(expected), rel=1e-4)
    assert result["dice"] == pytest.approx(np.nanmean(metrics.dice(as_maps(columns)[mapped], heat)), rel=1e-6)
    assert result["iou"] == pytest.approx(np.nanmean(metrics.iou(as_maps(columns)[mapped], heat)), rel=1e-6)


def test_the_models_own_preprocessing_is_the_default():
    rng = np.random.default_rng(2)
    kernel = rng.normal(size=(SIZE * SIZE * 3, CLASSES)).astype(np.float32)
    normalize = keras.layers.Normalization(mean=list(MEAN), variance=list(STD**2))
    backbone = linear_backbone(kernel, np.zeros(CLASSES, np.float32))
    model = pixel_model([normalize], backbone)
    dataset = as_dataset(arrays(6, 3), 6)
    default = evaluate_clickme(model, dataset)
    explicit = evaluate_clickme(backbone, dataset, preprocess=model.get_layer("preprocess"))
    np.testing.assert_allclose(default["per_image"]["spearman"], explicit["per_image"]["spearman"])
    with pytest.raises(ValueError, match="no 'preprocess' part.*pass preprocess="):
        evaluate_clickme(backbone, dataset)


def shortcut_and_gaming_models(seed: int = 4) -> tuple[keras.Model, keras.Model]:
    """A shortcut classifier reading mostly a 2x2 corner patch, and the same classifier plus one
    object-shaped term added to every class's logit (softmax ignores it)."""
    rng = np.random.default_rng(seed)
    # Small weights everywhere, as in any trained network: with exact zeros, the rounding residue
    # of the cancelled common term (about 1e-7) would decide the ranks of the tied pixels.
    cue = rng.normal(scale=0.01, size=(SIZE, SIZE, 3, CLASSES)).astype(np.float32)
    cue[:2, :2] = rng.normal(size=(2, 2, 3, CLASSES))
    cue = cue.reshape(-1, CLASSES)
    bias = np.zeros(CLASSES, np.float32)
    obj = np.zeros((SIZE, SIZE, 3), np.float32)
    obj[2:6, 2:6] = 5.0
    common = np.repeat(obj.reshape(-1, 1), CLASSES, axis=1)
    shortcut = pixel_model([keras.layers.Rescaling(1 / 255.0)], linear_backbone(cue, bias))
    gaming = pixel_model([keras.layers.Rescaling(1 / 255.0)], linear_backbone(cue + common, bias))
    return shortcut, gaming


def test_a_model_that_games_the_logit_saliency_is_flagged():
    shortcut, gaming = shortcut_and_gaming_models()
    dataset = as_dataset(arrays(12, 5), 6)
    gamed = evaluate_clickme(gaming, dataset)
    plain = evaluate_clickme(shortcut, dataset)
    assert gamed["accuracy"] == plain["accuracy"]  # same decisions
    assert gamed["spearman"]["mean"] > 0.5  # the logit saliency looks human-aligned...
    assert gamed["gaming_gap"] > GAMING_MARGIN and gamed["gaming"]  # ...and is flagged
    np.testing.assert_allclose(
        gamed["per_image"]["spearman_log_prob"], plain["per_image"]["spearman_log_prob"], atol=1e-3
    )
    assert abs(plain["gaming_gap"]) < GAMING_MARGIN and not plain["gaming"]
    assert not evaluate_clickme(gaming, dataset, gaming_margin=10.0)["gaming"]


def test_centered_training_saliency_ignores_a_term_common_to_all_classes():
    shortcut, gaming = shortcut_and_gaming_models()
    data = arrays(4, 6)
    labels = tf.one_hot(data["label"], CLASSES)
    inputs = tf.constant(data["image"] / 255.0, tf.float32)
    saliency = {}
    for name, model in (("shortcut", shortcut), ("gaming", gaming)):
        for centered in (False, True):
            saliency[name, centered] = signed_saliency(
                model.get_layer("backbone"), inputs, labels, centered_logits=centered
            )[0].numpy()
    np.testing.assert_allclose(saliency["gaming", True], saliency["shortcut", True], atol=1e-5)
    assert not np.allclose(saliency["gaming", False], saliency["shortcut", False], atol=1e-2)


def test_training_saliency_reduces_the_input_gradient_signed_or_absolute():
    """For logits = x . K the input gradient of the true-class logit is K's column for that class:
    the signed map is its channel mean, the absolute map its |.| max over channels."""
    rng = np.random.default_rng(3)
    kernel = rng.normal(size=(SIZE * SIZE * 3, CLASSES)).astype(np.float32)
    network = linear_backbone(kernel, np.zeros(CLASSES, np.float32))
    data = arrays(4, 7)
    columns = kernel.T[data["label"]].reshape(4, SIZE, SIZE, 3)
    labels = tf.one_hot(data["label"], CLASSES)
    maps = {
        kind: saliency_of(
            lambda x: (network(x, training=True), None), tf.constant(data["image"]), labels, saliency=kind
        )[0].numpy()
        for kind in ("signed", "absolute")
    }
    np.testing.assert_allclose(maps["signed"], columns.mean(-1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(maps["absolute"], np.abs(columns).max(-1), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="saliency must be one of"):
        saliency_of(lambda x: (network(x), None), tf.constant(data["image"]), labels, saliency="sum")


def test_malformed_or_empty_data_is_refused():
    shortcut, _ = shortcut_and_gaming_models()
    data = arrays(4)
    with pytest.raises(ValueError, match="keys image, heatmap, label"):
        evaluate_clickme(shortcut, tf.data.Dataset.from_tensor_slices((data["image"], data["label"])).batch(2))
    with pytest.raises(ValueError, match="empty"):
        evaluate_clickme(shortcut, as_dataset(data, 2).take(0))


def test_a_model_below_the_chance_threshold_is_flagged_near_chance():
    rng = np.random.default_rng(5)
    kernel = rng.normal(size=(SIZE * SIZE * 3, CLASSES)).astype(np.float32)
    data = arrays(30, seed=5)
    model = pixel_model([], linear_backbone(kernel, np.zeros(CLASSES, np.float32)))
    predictions = np.argmax(model.predict(data["image"], verbose=0), -1)
    threshold = metrics.chance_threshold(CLASSES)

    right = evaluate_clickme(model, as_dataset({**data, "label": predictions}, 8))
    assert right["accuracy"] == 1.0 and right["near_chance"] is False
    assert right["num_classes"] == CLASSES and right["chance_threshold"] == pytest.approx(threshold)

    wrong = evaluate_clickme(model, as_dataset({**data, "label": (predictions + 1) % CLASSES}, 8))
    assert wrong["accuracy"] == 0.0 and wrong["near_chance"] is True
    assert np.isfinite(wrong["spearman"]["mean"])  # still measured, but flagged


def test_images_of_another_size_than_the_model_takes_are_refused_in_one_line():
    kernel = np.zeros((SIZE * SIZE * 3, CLASSES), np.float32)
    model = pixel_model([], linear_backbone(kernel, np.zeros(CLASSES, np.float32)))
    bigger = {
        **arrays(4),
        "image": np.zeros((4, 2 * SIZE, 2 * SIZE, 3), np.float32),
        "heatmap": np.zeros((4, 2 * SIZE, 2 * SIZE, 1), np.float32),
    }
    with pytest.raises(ValueError, match=f"^images are 16x16 pixels but model '{model.name}' takes 8x8$"):
        evaluate_clickme(model, as_dataset(bigger, 4))
