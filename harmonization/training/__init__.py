"""Train Keras networks with the neural harmonizer: the model, the recipe, the strategy, the run."""

from harmonization.training.distribute import strategy
from harmonization.training.errors import ConfigError, StaleRunError, TrainingCollapsed
from harmonization.training.guards import CollapseGuard
from harmonization.training.harmonizer import Harmonizer
from harmonization.training.run import TrainConfig, TrainResult, run
from harmonization.training.schedule import WarmupStepDecay, recipe, set_precision

__all__ = [
    "CollapseGuard",
    "ConfigError",
    "Harmonizer",
    "StaleRunError",
    "TrainConfig",
    "TrainResult",
    "TrainingCollapsed",
    "WarmupStepDecay",
    "recipe",
    "run",
    "set_precision",
    "strategy",
]
