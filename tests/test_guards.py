"""The collapse guard's judgement, epoch by epoch, on constructed training logs (no training)."""
import math

import pytest

import builders  # noqa: F401  (loads harmonization before TensorFlow)
import keras

from harmonization.metrics import chance_threshold
from harmonization.training import CollapseGuard

LN4 = math.log(4)


def feed(guard: CollapseGuard, epochs: list[dict]) -> keras.Model:
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    model.stop_training = False
    guard.set_model(model)
    for epoch, logs in enumerate(epochs):
        guard.on_epoch_end(epoch, dict(logs))
        if model.stop_training:
            break
    return model


def test_a_run_held_at_chance_is_stopped_after_the_warm_up_and_the_patience():
    guard = CollapseGuard(num_classes=4, start_epoch=1, patience=2)
    model = feed(guard, [{"accuracy": 0.26, "ce": LN4}] * 6)
    assert model.stop_training and guard.stopped_epoch == 2  # epoch 0 is the warm-up: 1 and 2 count
    assert "\n" not in guard.message
    assert "epoch 3" in guard.message and "still at chance" in guard.message
    assert f"{chance_threshold(4):.3f}" in guard.message and f"{LN4:.3f}" in guard.message


def test_a_learning_run_is_not_stopped():
    guard = CollapseGuard(num_classes=4, start_epoch=1, patience=2)
    epochs = [{"accuracy": 0.3, "ce": 1.38}, {"accuracy": 0.35, "ce": 1.3}, {"accuracy": 0.6, "ce": 1.0},
              {"accuracy": 0.9, "ce": 0.5}]
    model = feed(guard, epochs)
    assert not model.stop_training and guard.message is None


def test_one_epoch_above_chance_resets_the_count():
    guard = CollapseGuard(num_classes=4, start_epoch=0, patience=2)
    chance, learning = {"accuracy": 0.25, "ce": LN4}, {"accuracy": 0.7, "ce": 0.8}
    model = feed(guard, [chance, learning, chance, learning, chance])
    assert not model.stop_training


def test_cross_entropy_stuck_at_ln_c_counts_as_chance_even_above_the_accuracy_threshold():
    guard = CollapseGuard(num_classes=4, patience=2)
    assert guard.at_chance({"accuracy": 0.5, "ce": LN4 * 1.01})
    assert not guard.at_chance({"accuracy": 0.5, "ce": LN4 * 0.9})
    assert guard.at_chance({"accuracy": 0.3, "ce": 0.9})  # accuracy near chance alone suffices
    assert guard.at_chance({})  # no logs: nothing shows that the model learns


def test_a_resumed_run_continues_the_count_from_its_history():
    guard = CollapseGuard(num_classes=4, start_epoch=0, patience=3,
                          history=[{"accuracy": 0.25, "ce": LN4}] * 2)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    model.stop_training = False
    guard.set_model(model)
    guard.on_epoch_end(2, {"accuracy": 0.25, "ce": LN4})
    assert model.stop_training and guard.stopped_epoch == 2


def test_bad_arguments():
    with pytest.raises(ValueError, match="patience"):
        CollapseGuard(num_classes=4, patience=0)
    with pytest.raises(ValueError, match="num_classes"):
        CollapseGuard(num_classes=1)
