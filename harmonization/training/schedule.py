"""The schedules of training: the reference recipe (SGD Nesterov, warm-up, step decay;
docs/method.md, "The training recipe") and the harmonization weight's (``lambda_at``,
``gate_update``; docs/harmonizer-schedule.md). Mixup is drawn by ``harmonization.inputs`` for
every reader (``load_clickme(mixup=...)``, ``ClickMeInputs``)."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="harmonization")
class WarmupStepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to ``base_lr`` over ``warmup_steps``, then x ``factor`` at each boundary.

    lr(step) = base_lr * min(1, (step + 1) / warmup_steps) * factor ** (boundaries <= step),
    with steps counted from 0 (so the first step already has a non-zero rate).
    """

    def __init__(self, base_lr: float, warmup_steps: int, boundaries: Sequence[int] = (), factor: float = 0.1):
        self.base_lr = float(base_lr)
        self.warmup_steps = int(warmup_steps)
        self.boundaries = [int(b) for b in boundaries]
        self.factor = float(factor)

    def __call__(self, step):
        """The rate at ``step`` (a scalar of any backend), in ``keras.ops``: it runs inside the
        TensorFlow, JAX and torch optimizer steps alike."""
        step = ops.cast(step, "float32")
        warmup = ops.minimum(1.0, (step + 1.0) / float(max(self.warmup_steps, 1)))
        passed = (
            sum(ops.cast(ops.greater_equal(step, float(b)), "float32") for b in self.boundaries)
            if self.boundaries
            else 0.0
        )
        return self.base_lr * warmup * ops.power(self.factor, passed)

    def get_config(self) -> dict:
        return {
            "base_lr": self.base_lr,
            "warmup_steps": self.warmup_steps,
            "boundaries": self.boundaries,
            "factor": self.factor,
        }


LAMBDA_SCHEDULES = ("adaptive", "linear")
"""When the harmonization weight applies (``Harmonizer``'s ``lambda_schedule``)."""
GATE_DECAY = 0.9
"""Per-step decay of the running training accuracy that opens the adaptive schedule's gate."""


def lambda_at(step, peak: float, ramp_steps: int, schedule: str, opened=None):
    """The harmonization weight at optimizer ``step`` (float32): ``peak`` reached linearly over
    ``ramp_steps`` (at once with 0) from step 0 ("linear"), or ("adaptive") from the step
    ``opened`` at which the gate opened (-1: not yet, and the weight is 0)."""
    step = ops.cast(step, "float32")
    if schedule == "adaptive":
        opened = ops.cast(opened, "float32")
        if not ramp_steps:
            return ops.where(opened >= 0, peak, 0.0)
        progress = ops.where(opened >= 0, (step - opened) / float(ramp_steps), 0.0)
    elif not ramp_steps:
        return ops.convert_to_tensor(peak, "float32")
    else:
        progress = step / float(ramp_steps)
    return peak * ops.minimum(1.0, progress)


def gate_update(running, hits, seen, threshold: float, step, dtype: str) -> tuple:
    """(running accuracy, opening step) of the adaptive gate after a step whose global batch had
    ``hits`` right of ``seen``: their ratio folded into ``running`` (decay ``GATE_DECAY``), and
    ``step`` where the result reaches ``threshold`` (-1 otherwise), as ``dtype``."""
    running = GATE_DECAY * running + (1.0 - GATE_DECAY) * hits / ops.maximum(seen, 1.0)
    opened = ops.where(running >= threshold, ops.cast(step, dtype), ops.cast(-1, dtype))
    return running, ops.cast(opened, dtype)


def recipe(
    base_lr: float,
    epochs: int,
    steps_per_epoch: int,
    warmup_epochs: float = 5,
    decay_epochs: Sequence[float] = (30, 60, 80),
    decay_factor: float = 0.1,
    momentum: float = 0.9,
    nesterov: bool = True,
    optimizer: str = "sgd",
) -> keras.optimizers.Optimizer:
    """SGD (Nesterov, momentum 0.9) on the warm-up + step-decay schedule, counted in steps.

    The reference runs: ``warmup_epochs=5``, ``decay_epochs=(30, 60, 80)``, factor 0.1. Short
    runs pass e.g. ``warmup_epochs=1, decay_epochs=()``. Decay points at or beyond ``epochs``
    never fire and are dropped. ``optimizer="adam"`` keeps the schedule but uses Adam, which
    suits small networks without batch norm on small data (the demo: base_lr 1e-3).
    """
    if base_lr <= 0:
        raise ValueError(f"base_lr must be positive, got {base_lr}")
    if epochs < 1 or steps_per_epoch < 1:
        raise ValueError(f"epochs and steps_per_epoch must be >= 1, got {epochs}, {steps_per_epoch}")
    if warmup_epochs < 0 or warmup_epochs > epochs:
        raise ValueError(f"warmup_epochs must be in [0, epochs={epochs}], got {warmup_epochs}")
    if optimizer not in ("sgd", "adam"):
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
    schedule = WarmupStepDecay(
        base_lr,
        round(warmup_epochs * steps_per_epoch),
        [round(e * steps_per_epoch) for e in sorted(decay_epochs) if e < epochs],
        decay_factor,
    )
    if optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=schedule)
    return keras.optimizers.SGD(learning_rate=schedule, momentum=momentum, nesterov=nesterov)


def set_precision(bfloat16: bool) -> None:
    """Use mixed bfloat16 (True) or float32 (False) for models built after this call.

    The losses and saliency maps of the Harmonizer are computed in float32 either way.
    """
    keras.config.set_dtype_policy("mixed_bfloat16" if bfloat16 else "float32")
