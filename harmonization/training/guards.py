"""The collapse guard: stop a harmonized run that is not learning to classify.

A harmonization term that takes over before the cross-entropy has given the logits a scale can
drive a network to a saliency that matches the human maps while it stays at chance; such a model
then *looks* better on alignment and tolerance (docs/method.md). The guard stops the run instead.

It judges only what the harmonization term did: under the adaptive schedule, epochs before the
gate opened (lambda 0) are a network still learning to classify, not a collapse; such a run goes on,
and ``never_left_chance`` words the outcome of one that is still at chance at its end. Chance is
that of the classes the training data hold, the head's width being only an upper bound.
"""

from __future__ import annotations

import logging
import math

import keras

from harmonization.clickme.labels import classes_present
from harmonization.clickme.paths import ShardPaths
from harmonization.metrics import chance_threshold, near_chance
from harmonization.training.errors import ConfigError, Namer, field_name

LOG = logging.getLogger("harmonization.training.run")
"""The run's logger: the lines below belong to a training run's log."""

CE_TOLERANCE = 0.02
"""An epoch's cross-entropy within this share of ln C has "not moved from chance"."""


class CollapseGuard(keras.callbacks.Callback):
    """Stops ``fit`` after ``patience`` consecutive judged epochs at chance.

    An epoch is judged from ``start_epoch`` on and, when ``gated`` (the adaptive schedule), only
    once an earlier epoch ended with the harmonization term on (its logged ``lambda`` > 0): the
    epoch in which the gate opened, and those before, ran mostly or wholly as plain training.
    ``num_classes``: the classes present in the training data. An epoch is at chance when its training ``accuracy`` is near chance
    (``harmonization.metrics.near_chance``) or its ``ce`` lies within ``CE_TOLERANCE`` * ln C of
    ln C, the cross-entropy of a uniform guess. Epochs before ``start_epoch`` (the learning-rate
    warm-up and the lambda ramp) are not judged. When it stops the run, ``message`` says what
    happened and what to try (otherwise it is None); ``stopped_epoch`` is the 0-based epoch.
    ``history`` (earlier epochs' logs, for a resumed run) continues the count.
    """

    def __init__(
        self, num_classes: int, start_epoch: int = 0, patience: int = 2, history: list[dict] = (), gated: bool = False
    ):
        super().__init__()
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        chance_threshold(num_classes)  # checks num_classes
        self.num_classes = int(num_classes)
        self.start_epoch = int(start_epoch)
        self.patience = int(patience)
        self.gated = bool(gated)
        self._gate_open = not self.gated
        self.message: str | None = None
        self.stopped_epoch: int | None = None
        self._streak = 0
        for epoch, logs in enumerate(history):
            self._judge(epoch, logs)

    def at_chance(self, logs: dict) -> bool:
        """Whether one epoch's training logs are those of a model at chance."""
        uniform = math.log(self.num_classes)
        ce = float(logs.get("ce", math.nan))
        return (
            near_chance(logs.get("accuracy", math.nan), self.num_classes) or abs(ce - uniform) <= CE_TOLERANCE * uniform
        )

    def _judge(self, epoch: int, logs: dict) -> bool:
        judged = epoch >= self.start_epoch and self._gate_open
        self._gate_open = self._gate_open or float(logs.get("lambda", 0.0) or 0.0) > 0
        if not judged:
            return False
        self._streak = self._streak + 1 if self.at_chance(logs) else 0
        return self._streak >= self.patience

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is None or not self._judge(epoch, logs):
            return
        self.stopped_epoch = epoch
        self.message = (
            f"training stopped after epoch {epoch + 1}: the model is still at chance (accuracy "
            f"{float(logs.get('accuracy', math.nan)):.3f}, below "
            f"{chance_threshold(self.num_classes):.3f}; cross-entropy "
            f"{float(logs.get('ce', math.nan)):.3f}, ln {self.num_classes} = "
            f"{math.log(self.num_classes):.3f}) for {self._streak} epochs with the harmonization "
            "term on, after the warm-up"
        )
        self.model.stop_training = True


def never_left_chance(history: list[dict], num_classes: int) -> str | None:
    """What to say of a finished run whose last epoch's training accuracy is still near chance
    for ``num_classes`` classes (None when it left chance): whether the harmonization term ever
    came on (``lambda`` > 0 in some epoch), and, when it did not, that the network learns too
    slowly (advice: the learning rate, whole-image crops, more epochs)."""
    if not history or not near_chance(history[-1].get("accuracy", math.nan), num_classes):
        return None
    last = history[-1]
    text = (
        f"the model never left chance in {len(history)} epochs (training accuracy "
        f"{float(last.get('accuracy', math.nan)):.3f}, below {chance_threshold(num_classes):.3f} "
        f"for the {num_classes} classes of the training data)"
    )
    if "lambda" in last and not any(float(row.get("lambda", 0.0) or 0.0) > 0 for row in history):
        text += (
            "; the harmonization term never came on (lambda 0 in every epoch), so this is slow learning, not a collapse"
        )
    return text


def data_classes(
    train: ShardPaths, num_classes: int, mix_with: ShardPaths | None = None, name: Namer = field_name
) -> int:
    """The number of classes chance is taken from: those present in the labels of the ``train``
    shards (``num_classes``, the head's width, only bounds it; with ``mix_with`` ImageNet data,
    the head's width). Logs a warning when the head is wider than the data's classes; a
    ``ConfigError`` when the labels hold fewer than 2 classes. ``name`` names the fields."""
    if mix_with:
        return num_classes
    present = classes_present(train, limit=num_classes)
    if len(present) < 2:
        raise ConfigError(
            lambda name: (
                f"{name('train')} {train}: the training labels hold "
                f"{len(present)} class(es); a classifier needs at least 2"
            )
        )
    if len(present) < num_classes:
        LOG.warning(
            "%s %d exceeds the %d classes present in the training data: chance is taken as "
            "1/%d (the head is wider than the data)",
            name("num_classes"),
            num_classes,
            len(present),
            len(present),
        )
    return len(present)
