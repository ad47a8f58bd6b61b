"""The report's human-alignment part: accuracy against the human alignment score (the Harmonization
paper's figure) and human against adversarial alignment across models, with their statistics."""
from __future__ import annotations

import math
from collections.abc import Sequence

from matplotlib.figure import Figure

from attacks_torch.report.figures import accuracy_point, alignment_point, scatter
from attacks_torch.report.results import ModelResult
from harmonization.metrics import model_correlation


def human_point(r: ModelResult) -> tuple[float, float]:
    """The human alignment score (mean Spearman / human ceiling) and its standard error on that scale."""
    scale = r.human_alignment_score / r.human_alignment if r.human_alignment else math.nan
    return r.human_alignment_score, r.human_alignment_sem * scale


def measured(results: Sequence[ModelResult]) -> list[ModelResult]:
    """The results with a human alignment."""
    return [r for r in results if math.isfinite(r.human_alignment_score)]


def human_statistics(reliable: Sequence[ModelResult]) -> dict[str, dict[str, float]]:
    """Spearman rho and p across the (reliable) models: accuracy and adversarial alignment against the
    human alignment score."""
    chosen = measured(reliable)
    if not chosen:
        return {}
    score = [r.human_alignment_score for r in chosen]
    return {"accuracy_vs_human_alignment": model_correlation([r.accuracy for r in chosen], score),
            "human_vs_adversarial_alignment": model_correlation(score, [r.alignment for r in chosen])}


def human_figures(attack: str, results: Sequence[ModelResult], stats: dict,
                  pairs: Sequence[tuple[str, str]]) -> list[tuple[str, Figure]]:
    """(name, figure) of the two scatters (near-chance models grey, out of the arrows), or none when no
    model has a human alignment."""
    chosen = measured(results)
    if not chosen:
        return []

    def rho(name: str) -> str:
        values = stats.get(name, {"rho": math.nan})
        return f"rho = {values['rho']:.2f}, p = {values['p']:.2g}" if math.isfinite(values["rho"]) else "rho n/a"

    return [
        ("accuracy_vs_human_alignment", scatter(
            chosen, accuracy_point, human_point, "accuracy (%)", "human alignment score (Spearman / ceiling)",
            f"accuracy vs human alignment ({rho('accuracy_vs_human_alignment')})", pairs)),
        ("human_vs_adversarial_alignment", scatter(
            chosen, human_point, alignment_point, "human alignment score", "adversarial alignment",
            f"{attack}: human vs adversarial alignment ({rho('human_vs_adversarial_alignment')})", pairs)),
    ]
