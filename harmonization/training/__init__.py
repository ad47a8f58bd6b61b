"""Train Keras networks with the neural harmonizer: the model, the recipe, the strategy."""
from harmonization.training.harmonizer import Harmonizer
from harmonization.training.schedule import WarmupStepDecay, mixup, recipe, set_precision
from harmonization.training.distribute import strategy

__all__ = ["Harmonizer", "WarmupStepDecay", "mixup", "recipe", "set_precision", "strategy"]
