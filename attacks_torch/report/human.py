"""The report's human-alignment part: accuracy against the human alignment score (the Harmonization
paper's figure) and human against adversarial alignment across models, with their statistics."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

from matplotlib.figure import Figure

from attacks_torch.report.accuracy import lookup_accuracy, read_accuracy_csv
from attacks_torch.report.figures import accuracy_point, alignment_point, number_text, scatter
from attacks_torch.report.results import ModelResult, _classify, human_fields, unreliable_reason
from attacks_torch.sweep import ModelFolder, SweepFolder
from attacks_torch.sweep.tables import read_json
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
    return {
        "accuracy_vs_human_alignment": model_correlation([r.accuracy for r in chosen], score),
        "human_vs_adversarial_alignment": model_correlation(score, [r.alignment for r in chosen]),
    }


def human_figures(
    attack: str, results: Sequence[ModelResult], stats: dict, pairs: Sequence[tuple[str, str]]
) -> list[tuple[str, Figure]]:
    """(name, figure) of the two scatters (near-chance models grey, out of the arrows), or none when no
    model has a human alignment."""
    chosen = measured(results)
    if not chosen:
        return []

    def rho(name: str) -> str:
        values = stats.get(name, {"rho": math.nan})
        return f"rho = {values['rho']:.2f}, p = {values['p']:.2g}" if math.isfinite(values["rho"]) else "rho n/a"

    return [
        (
            "accuracy_vs_human_alignment",
            scatter(
                chosen,
                accuracy_point,
                human_point,
                "accuracy (%)",
                "human alignment score (Spearman / ceiling)",
                f"accuracy vs human alignment ({rho('accuracy_vs_human_alignment')})",
                pairs,
            ),
        ),
        (
            "human_vs_adversarial_alignment",
            scatter(
                chosen,
                human_point,
                alignment_point,
                "human alignment score",
                "adversarial alignment",
                f"{attack}: human vs adversarial alignment ({rho('human_vs_adversarial_alignment')})",
                pairs,
            ),
        ),
    ]


def load_scored(
    sweep_dir: str | os.PathLike,
    accuracy_csv: str | os.PathLike | None = None,
    pairs: Sequence[tuple[str, str]] = (),
    arch_overrides: dict[str, str] | None = None,
) -> list[ModelResult]:
    """The models of a sweep folder measured for human alignment alone (``adv-align score``), as
    ModelResults with attack "human" and no attack measures (NaN)."""
    store = SweepFolder(sweep_dir)
    table = read_accuracy_csv(accuracy_csv) if accuracy_csv else {}
    paths = sorted(store.root.glob("*/human/scores.json"))
    summaries = [read_json(path, ("model", "human_alignment", "human")) for path in paths]
    specs = {s["model"]: s.get("spec", s["model"]) for s in summaries}
    results = []
    for path, s in zip(paths, summaries):
        human, spec = s["human"], specs[s["model"]]
        given = lookup_accuracy(table, spec)
        given = lookup_accuracy(table, s["model"]) if given is None else given
        results.append(
            ModelResult(
                label=s["model"],
                spec=spec,
                attack="human",
                norm="",
                arch=_classify(s["model"], spec, pairs, arch_overrides or {}, specs),
                accuracy=100.0 * human["accuracy"] if given is None else given,
                accuracy_source="stimuli" if given is None else "csv",
                n_images=human["count"],
                n_attacked=0,
                n_fooled=0,
                tolerance=math.nan,
                tolerance_sem=math.nan,
                alignment=math.nan,
                alignment_sem=math.nan,
                linf=math.nan,
                linf_sem=math.nan,
                folder=ModelFolder(path.parent),
                stimulus_accuracy=human["accuracy"],
                num_classes=human["num_classes"],
                unreliable=unreliable_reason(human["accuracy"], human["num_classes"]),
                **human_fields(s),
            )
        )
    return results


def scored_section(
    results: Sequence[ModelResult], pairs: Sequence[tuple[str, str]]
) -> tuple[dict, list[tuple[str, Figure]], list[str]]:
    """Statistics, figure and models table of models measured for human alignment alone."""
    reliable = [r for r in results if r.unreliable is None]
    stats = {key: value for key, value in human_statistics(reliable).items() if key.startswith("accuracy")}
    stats["unreliable"] = {r.label: r.unreliable for r in results if r.unreliable is not None}
    figures = [
        (name, figure)
        for name, figure in human_figures("human", results, stats, pairs)
        if name == "accuracy_vs_human_alignment"
    ]
    lines = [
        "| model | class | accuracy (%) | source | images | human alignment score | gaming | reliable |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(results, key=lambda r: r.label):
        reliable_text = "yes" if r.unreliable is None else f"no: {r.unreliable}; left out of the statistics"
        lines.append(
            f"| {r.label} | {r.arch} | {number_text(r.accuracy, digits=2)} | {r.accuracy_source} | "
            f"{r.n_images} | {number_text(r.human_alignment_score)} | {'yes' if r.gaming else 'no'} | "
            f"{reliable_text} |"
        )
    return stats, figures, lines
