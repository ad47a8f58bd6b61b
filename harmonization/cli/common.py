"""What every ``harmonize`` subcommand shares: the one-line parser, argument types, display."""
from __future__ import annotations

import argparse
import math
from collections.abc import Callable

PROG = "harmonize"


class UsageError(Exception):
    """A bad argument or input, reported as one line with exit code 2."""


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr (exit code 2)."""

    def error(self, message: str):
        self.exit(2, f"{PROG}: error: {message} (see {self.prog} --help)\n")


def number(kind: Callable[[str], float], low: float, inclusive: bool = True) -> Callable[[str], float]:
    """An argument type: a finite ``kind`` number >= ``low`` (> ``low`` unless ``inclusive``)."""
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not math.isfinite(value) or value < low or (value == low and not inclusive):
            raise argparse.ArgumentTypeError(f"{text} must be {'>=' if inclusive else '>'} {low}")
        return value
    return parse


positive_int = number(int, 1)
non_negative_int = number(int, 0)
positive_float = number(float, 0.0, inclusive=False)
non_negative_float = number(float, 0.0)


def fraction(text: str) -> float:
    """An argument type: a number in (0, 1]."""
    value = positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"{text} must be in (0, 1]")
    return value


def flag_names(parser: argparse.ArgumentParser) -> dict[str, str]:
    """{destination: the flag that sets it} for the options of ``parser``."""
    return {action.dest: max(action.option_strings, key=len)
            for action in parser._actions if action.option_strings}


def print_evaluation(title: str, result: dict, conflict: dict | None = None) -> None:
    """The summary of an ``evaluate_clickme`` result (and a conflict-split accuracy)."""
    spearman, log_prob = result["spearman"], result["spearman_log_prob"]
    unreliable = " (unreliable: near chance)" if result["near_chance"] else ""
    lines = [f"{title}: {result['count']} images, {result['mapped']} with a human map"]
    if result["near_chance"]:
        lines.append(f"  WARNING: accuracy {result['accuracy']:.4f} is near chance (below "
                     f"{result['chance_threshold']:.4f} for {result['num_classes']} classes): the "
                     "model has not learnt to classify, so its alignment numbers are unreliable")
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
        + ("FLAGGED, logit alignment is not backed by the log-probability saliency"
           if result["gaming"] else f"ok (margin {result['gaming_margin']})"),
    ]
    if conflict is not None:
        lines.append(conflict_line(conflict))
    print("\n".join(lines), flush=True)


def conflict_line(conflict: dict) -> str:
    """The summary line of a conflict-split evaluation."""
    return f"  conflict-split accuracy   {conflict['accuracy']:.4f} ({conflict['count']} images)"
