"""ClickMe training input without TensorFlow: a numpy and Pillow core over ``harmonization.clickme``
(``ClickMeInputs``: decoding of both layouts, diffusion, joint crop and flip, ImageNet mixing,
mixup, deterministic per seed) and its ``torch.utils.data`` adapter (``harmonization.inputs.torch_data``,
imported on demand). Importing this package loads neither TensorFlow nor torch.
"""

from harmonization.inputs.core import ClickMeInputs, Plan

__all__ = ["ClickMeInputs", "Plan"]
