"""The collapse guard's judgement, epoch by epoch, on constructed training logs (no training)."""

import math

import pytest

import builders  # noqa: F401  (loads harmonization before TensorFlow)
import keras

from harmonization.metrics import chance_threshold
from harmonization.training import CollapseGuard
from harmonization.training.guards import never_left_chance

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
    epochs = [
        {"accuracy": 0.3, "ce": 1.38},
        {"accuracy": 0.35, "ce": 1.3},
        {"accuracy": 0.6, "ce": 1.0},
        {"accuracy": 0.9, "ce": 0.5},
    ]
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
    guard = CollapseGuard(num_classes=4, start_epoch=0, patience=3, history=[{"accuracy": 0.25, "ce": LN4}] * 2)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    model.stop_training = False
    guard.set_model(model)
    guard.on_epoch_end(2, {"accuracy": 0.25, "ce": LN4})
    assert model.stop_training and guard.stopped_epoch == 2


def test_epochs_before_the_adaptive_gate_opened_are_slow_learning_not_a_collapse():
    guard = CollapseGuard(num_classes=4, start_epoch=1, patience=2, gated=True)
    slow = {"accuracy": 0.3, "ce": LN4 * 0.995, "lambda": 0.0}
    model = feed(guard, [slow] * 8)  # the gate never opened: the harmonization term did nothing
    assert not model.stop_training and guard.message is None


def test_a_collapse_after_the_adaptive_gate_opened_is_still_stopped():
    guard = CollapseGuard(num_classes=4, start_epoch=1, patience=2, gated=True)
    opened = {"accuracy": 0.45, "ce": 1.2, "lambda": 0.1}  # the gate opens late in this epoch
    fallen = {"accuracy": 0.26, "ce": LN4, "lambda": 0.5}
    epochs = [{"accuracy": 0.3, "ce": LN4, "lambda": 0.0}] * 3 + [opened, fallen, fallen, fallen]
    model = feed(guard, epochs)
    assert model.stop_training and guard.stopped_epoch == 5  # epochs 4 and 5 ran with the term on
    assert "with the harmonization term on" in guard.message
    # the epoch in which the gate opened is not judged: it ran mostly as plain training
    late = CollapseGuard(num_classes=4, start_epoch=0, patience=2, gated=True)
    assert not feed(
        late, [{"accuracy": 0.3, "ce": LN4, "lambda": 0.0}, {"accuracy": 0.3, "ce": LN4, "lambda": 0.01}, fallen]
    ).stop_training


def test_a_gated_run_resumed_after_the_gate_opened_judges_from_its_first_new_epoch():
    history = [{"accuracy": 0.5, "ce": 1.1, "lambda": 0.5}, {"accuracy": 0.26, "ce": LN4, "lambda": 0.5}]
    guard = CollapseGuard(num_classes=4, patience=2, history=history, gated=True)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    model.stop_training = False
    guard.set_model(model)
    guard.on_epoch_end(2, {"accuracy": 0.26, "ce": LN4, "lambda": 0.5})
    assert model.stop_training and guard.stopped_epoch == 2


def test_never_left_chance_names_slow_learning_only_when_the_term_never_came_on():
    stuck = [{"accuracy": 0.3, "lambda": 0.0}] * 3
    text = never_left_chance(stuck, 4)
    assert "never left chance in 3 epochs" in text and "0.300" in text and f"{chance_threshold(4):.3f}" in text
    assert "slow learning, not a collapse" in text and "\n" not in text
    assert "slow learning" not in never_left_chance([*stuck[:2], {"accuracy": 0.3, "lambda": 0.2}], 4)
    assert never_left_chance([{"accuracy": 0.3, "lambda": 0.0}, {"accuracy": 0.9, "lambda": 0.5}], 4) is None
    assert never_left_chance([{"accuracy": 0.3}], 100) is None  # above 100-way chance
    assert never_left_chance([], 4) is None


def test_bad_arguments():
    with pytest.raises(ValueError, match="patience"):
        CollapseGuard(num_classes=4, patience=0)
    with pytest.raises(ValueError, match="num_classes"):
        CollapseGuard(num_classes=1)


def test_chance_comes_from_the_classes_present_in_the_labels(tmp_path, caplog):
    import logging

    from harmonization.clickme.labels import classes_present
    from harmonization.training.guards import data_classes

    shards = builders.write_random_label_shards(tmp_path, n=32, num_classes=4)
    assert classes_present(shards) == {0, 1, 2, 3}
    assert len(classes_present(shards, limit=2)) == 2  # stops reading once the head's width is reached
    with caplog.at_level(logging.WARNING):
        assert data_classes(shards, 100) == 4
    assert [r.getMessage() for r in caplog.records] == [
        "num_classes 100 exceeds the 4 classes present in the training data: chance is taken as 1/4 "
        "(the head is wider than the data)"
    ]
    caplog.clear()
    assert data_classes(shards, 4) == 4 and not caplog.records
    assert data_classes(shards, 1000, mix_with="imagenet-*") == 1000  # mixed ImageNet: the head's width
