"""What every ``harmonize`` subcommand shares: its bounds and argument types, display, and the
refusal of an output that is an input (the parser and number types: ``toolkit``)."""

from __future__ import annotations

import argparse
import glob
import os
from collections.abc import Iterable

from harmonization.cli.toolkit import UsageError, number

PROG = "harmonize"

MAX_COUNT = 10**7
"""Upper bound of counts (epochs, steps, images, batches): far above any real run, far below what
overflows or hangs silently for hours."""
MAX_EPOCHS = 10**5
"""Upper bound of epoch numbers and durations (epochs, warm-up, ramp, decay points)."""
MAX_CLASSES = 100_000
"""Upper bound of a head's width (ImageNet-21k has 21,843 classes)."""
MAX_IMAGE_SIZE = 4096
"""Upper bound of an image side in pixels (one 4096x4096 float32 image is 200 MB)."""
MAX_SEED = 2**32 - 1
"""Largest seed: numpy, TensorFlow and Keras all take a 32-bit seed."""


positive_int = number(int, 1, high=MAX_COUNT)
positive_float = number(float, 0.0, inclusive=False)
non_negative_float = number(float, 0.0)
epochs_float = number(float, 0.0, high=MAX_EPOCHS)
num_classes = number(int, 2, high=MAX_CLASSES)
image_size = number(int, 16, high=MAX_IMAGE_SIZE)
seed = number(int, 0, high=MAX_SEED)


def fraction(text: str) -> float:
    """An argument type: a number in (0, 1]."""
    value = positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"{text} must be in (0, 1]")
    return value


def print_evaluation(title: str, result: dict, conflict: dict | None = None) -> None:
    """The summary of an ``evaluate_clickme`` result (and a conflict-split accuracy)."""
    spearman, log_prob = result["spearman"], result["spearman_log_prob"]
    unreliable = " (unreliable: near chance)" if result["near_chance"] else ""
    lines = [f"{title}: {result['count']} images, {result['mapped']} with a human map"]
    if result["near_chance"]:
        lines.append(
            f"  WARNING: accuracy {result['accuracy']:.4f} is near chance (below "
            f"{result['chance_threshold']:.4f} for {result['num_classes']} classes): the "
            "model has not learnt to classify, so its alignment numbers are unreliable"
        )
    if result.get("head_wider_than_data"):
        lines.append(
            f"  NOTE: the model's head has {result['head_classes']} classes, the evaluated "
            f"labels {result['num_classes']}: chance is taken from the labels' "
            f"{result['num_classes']}"
        )
    if result.get("saliency_of_logits") is False:
        lines.append(
            "  WARNING: the model's outputs are a softmax of its logits that cannot be "
            "removed: its logit saliency is a probability saliency and the gaming check "
            "does not compare what it should"
        )
    lines += [
        f"  accuracy                  {result['accuracy']:.4f}",
        f"  alignment score (logit)   {result['alignment_score']:.4f}   "
        f"mean Spearman {spearman['mean']:.4f} +- {spearman['sem']:.4f} (s.e.){unreliable}",
        f"  alignment score (log p)   {result['alignment_score_log_prob']:.4f}   "
        f"mean Spearman {log_prob['mean']:.4f} +- {log_prob['sem']:.4f} (s.e.){unreliable}",
        f"  Dice {result['dice']:.4f}   IoU {result['iou']:.4f}{unreliable}",
        f"  alignment divided by the {result['denominator']['kind']} human ceiling "
        f"({result['denominator']['value']:.4f})",
        f"  gaming gap (logit - log p Spearman) {result['gaming_gap']:+.4f}: "
        + (
            "FLAGGED, logit alignment is not backed by the log-probability saliency"
            if result["gaming"]
            else f"ok (margin {result['gaming_margin']})"
        ),
    ]
    if conflict is not None:
        lines.append(conflict_line(conflict))
    print("\n".join(lines), flush=True)


def conflict_line(conflict: dict) -> str:
    """The summary line of a conflict-split evaluation."""
    return f"  conflict-split accuracy   {conflict['accuracy']:.4f} ({conflict['count']} images)"


def _same(a: str, b: str) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)  # hard links
    except OSError:
        return False


def refuse_input_as_output(flag: str, outputs: Iterable[str], inputs: Iterable[str]) -> None:
    """Raise ``UsageError`` when a file or folder a command writes (``outputs``) is, or resolves
    through links to, one it reads (``inputs``: files, folders, globs; globs are expanded)."""
    read: list[str] = []
    for item in filter(None, inputs):
        read.append(item)
        if glob.has_magic(item):
            read.extend(glob.glob(item))
    for out in outputs:
        for path in read:
            if _same(out, path):
                raise UsageError(
                    f"{flag} {out} is an input of this command ({path}): writing there "
                    "would destroy it; name another path"
                )
