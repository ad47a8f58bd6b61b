"""The collapse guard: stop a harmonized run that is not learning to classify.

A harmonization term that takes over before the cross-entropy has given the logits a scale can
drive a network to a saliency that matches the human maps while it stays at chance; such a model
then *looks* better on alignment and tolerance (docs/method.md). The guard stops the run instead.
"""
from __future__ import annotations

import math

import keras

from harmonization.metrics import chance_threshold, near_chance

CE_TOLERANCE = 0.02
"""An epoch's cross-entropy within this share of ln C has "not moved from chance"."""


class CollapseGuard(keras.callbacks.Callback):
    """Stops ``fit`` after ``patience`` consecutive epochs at chance, counted from ``start_epoch``.

    An epoch is at chance when its training ``accuracy`` is near chance
    (``harmonization.metrics.near_chance``) or its ``ce`` lies within ``CE_TOLERANCE`` * ln C of
    ln C, the cross-entropy of a uniform guess. Epochs before ``start_epoch`` (the learning-rate
    warm-up and the lambda ramp) are not judged. When it stops the run, ``message`` says what
    happened and what to try (otherwise it is None); ``stopped_epoch`` is the 0-based epoch.
    ``history`` (earlier epochs' logs, for a resumed run) continues the count.
    """

    def __init__(self, num_classes: int, start_epoch: int = 0, patience: int = 2,
                 history: list[dict] = ()):
        super().__init__()
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        chance_threshold(num_classes)  # checks num_classes
        self.num_classes = int(num_classes)
        self.start_epoch = int(start_epoch)
        self.patience = int(patience)
        self.message: str | None = None
        self.stopped_epoch: int | None = None
        self._streak = 0
        for epoch, logs in enumerate(history):
            self._judge(epoch, logs)

    def at_chance(self, logs: dict) -> bool:
        """Whether one epoch's training logs are those of a model at chance."""
        uniform = math.log(self.num_classes)
        ce = float(logs.get("ce", math.nan))
        return (near_chance(logs.get("accuracy", math.nan), self.num_classes)
                or abs(ce - uniform) <= CE_TOLERANCE * uniform)

    def _judge(self, epoch: int, logs: dict) -> bool:
        if epoch < self.start_epoch:
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
            f"{math.log(self.num_classes):.3f}) for {self._streak} epochs after the warm-up")
        self.model.stop_training = True
