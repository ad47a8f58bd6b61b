"""What both packages call a model's parts and specs, without importing Keras, TensorFlow or torch.

- A pixel model (``harmonization.models.pixel``) is two named parts: :data:`PREPROCESS` (pixels in
  [0, 255] -> the network's input) and :data:`BACKBONE` (that input -> logits). The attack side
  finds them by these names in a Keras file it runs on torch.
- :data:`IMAGENET_MEAN` / :data:`IMAGENET_STD`: the RGB normalisation (for pixels in [0, 1]) of
  torchvision's weights and of the published harmonized files.
- ``published:NAME:PATH``: a published harmonized file of architecture NAME stored at PATH (any
  file name), as ``harmonize check-accuracy`` and ``adv-align attack`` take it; :func:`parse_published`
  is its one parser.
"""

from __future__ import annotations

PREPROCESS = "preprocess"
BACKBONE = "backbone"
PIXEL_MODEL_PARTS = (PREPROCESS, BACKBONE)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PUBLISHED_PREFIX = "published:"


def parse_published(spec: str, what: str = "model") -> tuple[str, str]:
    """``published:NAME:PATH`` -> (NAME, PATH), both stripped; PATH may hold ":".

    Any other text is a one-line ValueError ``"{what} {spec!r}: expected published:NAME:PATH"``
    (``what`` names the argument, e.g. ``--model``). Whether NAME is a published architecture is
    left to the loader, which lists the known ones.
    """
    name, sep, path = spec[len(PUBLISHED_PREFIX) :].partition(":")
    if not spec.startswith(PUBLISHED_PREFIX) or not sep or not name.strip() or not path.strip():
        raise ValueError(f"{what} {spec!r}: expected {PUBLISHED_PREFIX}NAME:PATH")
    return name.strip(), path.strip()
