"""The paper's figures, statistics and tables from a finished sweep folder.

Per attack found in the sweep (l2_pgd gives Fig. 2-4, linf_pgd Fig. S3, cw_l2 with l2_pgd Fig. S4-S5):
- ``<attack>_accuracy_vs_tolerance``: accuracy vs perturbation tolerance (mean perturbation norm of
  the fooled images, in the attack's norm, [0, 1] pixel units), standard-error bars (Fig. 2, S3);
- ``<attack>_accuracy_vs_alignment``: accuracy vs adversarial alignment (Fig. 3);
- ``<attack>_tolerance_vs_alignment``: the trade-off with its Pareto front (Fig. 4);
- ``<attack>_vs_l2_pgd_tolerance`` / ``_alignment``: the same models under two attacks (Fig. S4, S5);
- ``<attack>_panels``: image, human map and each model's |mean over channels of delta| labelled with its
  eps and adversarial alignment, beside the model's saliency map when measured (Fig. 1, 5);
- ``<attack>_accuracy_vs_human_alignment`` and ``<attack>_human_vs_adversarial_alignment`` when the sweep
  measured human alignment (``adv-align attack``'s default): the Harmonization paper's figure, and human
  against adversarial alignment across models, with Spearman rho and p in statistics.json.
A folder whose models were measured for human alignment alone (``adv-align score``) gets
``human_accuracy_vs_human_alignment``, its statistic and the models table.
Points are coloured by class (CNN, ViT, hybrid); arrows go from each control to its harmonized
model. Statistics (``harmonization.metrics``): Spearman rho and p across models, Welch's t-test
of ViTs against CNNs. Accuracy is the top-1 of the ``--accuracy`` CSV (timm's results format)
when the model is in it, else the accuracy measured on the stimuli (the table says which).

A model whose accuracy on the stimuli is near chance (``harmonization.metrics.near_chance``, with
chance taken from the classes in the stimuli's labels, the head's width bounding them) is
unreliable: a network that has learnt nothing can look tolerant and aligned. It stays in the table
with the reason beside it, but is left out of the statistics and of the control -> harmonized
arrows, and ``statistics.json`` lists it under ``unreliable``; a head wider than the stimuli's
classes is noted. A folder holding sweeps of different stimulus sets is refused (one line). The
sweep folder is read only through :class:`attacks_torch.sweep.SweepFolder`; every file is written
atomically.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

from attacks_torch.attacks.registry import ATTACK_REGISTRY
from attacks_torch.report.figures import (
    accuracy_point,
    alignment_point,
    number_text,
    panels_figure,
    pareto_front,
    save_figure,
    scatter,
    tolerance_point,
    versus,
)
from attacks_torch.report.human import human_figures, human_statistics, load_scored, scored_section
from attacks_torch.report.results import (
    ModelResult,
    load_results,
    one_stimulus_set,
    parse_arch_overrides,
    statistics,
    unreliable_reason,
    wider_head,
)
from attacks_torch.sweep import SweepError, SweepFolder
from harmonization.files import write_json, write_text

__all__ = [
    "ModelResult",
    "build_report",
    "load_results",
    "pareto_front",
    "parse_arch_overrides",
    "statistics",
    "unreliable_reason",
]


def _p(value: float) -> str:
    return f"{value:.3g}" if math.isfinite(value) else "n/a"


def _statistics_markdown(stats: dict[str, dict[str, float]]) -> list[str]:
    lines = ["| test | statistic | p | n or df |", "|---|---|---|---|"]
    for name, values in stats.items():
        if "rho" in values:
            lines.append(
                f"| Spearman {name.replace('_', ' ')} | rho = {number_text(values['rho'])} | "
                f"{_p(values['p'])} | n = {values['n']} |"
            )
        else:
            lines.append(
                f"| Welch t-test {name.replace('_', ' ')} | t = {number_text(values['t'])} | "
                f"{_p(values['p'])} | df = {number_text(values['df'], digits=1)} |"
            )
    return lines


def _models_markdown(results: Sequence[ModelResult]) -> list[str]:
    lines = [
        "| model | class | accuracy (%) | source | images | attacked | fooled | tolerance | L-inf | alignment "
        "| human alignment score | reliable |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(results, key=lambda r: r.label):
        reliable = "yes" if r.unreliable is None else f"no: {r.unreliable}; left out of the statistics"
        lines.append(
            f"| {r.label} | {r.arch} | {number_text(r.accuracy, digits=2)} | {r.accuracy_source} | "
            f"{r.n_images} | {r.n_attacked} | {r.n_fooled} | {number_text(r.tolerance, r.tolerance_sem)} | "
            f"{number_text(r.linf, r.linf_sem)} | {number_text(r.alignment, r.alignment_sem)} | "
            f"{number_text(r.human_alignment_score)}{' (gaming)' if r.gaming else ''} | {reliable} |"
        )
    return lines


def _attack_section(
    attack: str,
    chosen: Sequence[ModelResult],
    reference: Sequence[ModelResult],
    pairs: Sequence[tuple[str, str]],
    store: SweepFolder,
    out: Path,
    panels: int,
) -> tuple[dict, list[str]]:
    """Figures of one attack written to ``out``; returns its statistics and its report.md lines."""
    tolerance_label = f"perturbation tolerance ({'L-inf' if chosen[0].norm == 'linf' else 'L2'})"
    reliable = [r for r in chosen if r.unreliable is None]
    stats: dict = {**statistics(reliable), **human_statistics(reliable)}
    figures = [
        (
            "accuracy_vs_tolerance",
            scatter(
                chosen,
                accuracy_point,
                tolerance_point,
                "accuracy (%)",
                tolerance_label,
                f"{attack}: accuracy vs tolerance",
                pairs,
            ),
        ),
        (
            "accuracy_vs_alignment",
            scatter(
                chosen,
                accuracy_point,
                alignment_point,
                "accuracy (%)",
                "adversarial alignment",
                f"{attack}: accuracy vs alignment",
                pairs,
            ),
        ),
        (
            "tolerance_vs_alignment",
            scatter(
                chosen,
                tolerance_point,
                alignment_point,
                tolerance_label,
                "adversarial alignment",
                f"{attack}: the trade-off",
                pairs,
                front=True,
            ),
        ),
    ]
    if attack != "l2_pgd" and reference:
        for measure in ("tolerance", "alignment"):
            stats[f"{measure}_vs_l2_pgd"], figure = versus(
                reliable, {r.label: r for r in reference if r.unreliable is None}, attack, measure
            )
            figures.append((f"vs_l2_pgd_{measure}", figure))
    figures += human_figures(attack, chosen, stats, pairs)
    panel = panels_figure(store, chosen, panels)
    if panel is not None:
        figures.append(("panels", panel))
    md = [f"## {attack}", "", *_statistics_markdown(stats), ""]
    unreliable = {r.label: r.unreliable for r in chosen if r.unreliable is not None}
    if unreliable:
        md += [
            f"Left out of the statistics and the arrows as unreliable: "
            f"{'; '.join(f'{label} ({why})' for label, why in unreliable.items())}.",
            "",
        ]
    stats["unreliable"] = unreliable
    wider = {r.label: note for r in chosen if (note := wider_head(r.num_classes, r.data_classes)) is not None}
    if wider:
        md += [
            f"Heads wider than the stimuli's classes (chance is judged from the classes in the stimuli): "
            f"{'; '.join(f'{label} ({note})' for label, note in wider.items())}.",
            "",
        ]
    for name, figure in figures:
        png, svg = save_figure(figure, out, f"{attack}_{name}")
        md += [f"![{attack} {name.replace('_', ' ')}]({png}) ([svg]({svg}))", ""]
    md += ["### Models", "", *_models_markdown(chosen), ""]
    return stats, md


def _scored_report(
    store: SweepFolder, out: Path, scored: Sequence[ModelResult], pairs: Sequence[tuple[str, str]]
) -> Path:
    """The report of a folder whose models were measured for human alignment alone (``adv-align score``)."""
    stats, figures, table = scored_section(scored, pairs)
    md = [
        "# Human alignment report",
        "",
        f"Sweep `{store.root}`: {len(scored)} models measured for human alignment alone (no attacks). The "
        "human alignment score is the mean Spearman correlation of the evaluation saliency with the human "
        "map over the human ceiling (docs/method.md); near-chance models are left out of the statistics.",
        "",
        *_statistics_markdown({k: v for k, v in stats.items() if k != "unreliable"}),
        "",
    ]
    for name, figure in figures:
        png, svg = save_figure(figure, out, f"human_{name}")
        md += [f"![{name.replace('_', ' ')}]({png}) ([svg]({svg}))", ""]
    md += ["## Models", "", *table, ""]
    write_json(out / "statistics.json", {"human": stats})
    write_text(out / "report.md", "\n".join(md))
    return out / "report.md"


def build_report(
    sweep_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    accuracy_csv: str | os.PathLike | None = None,
    pairs: Sequence[tuple[str, str]] = (),
    arch_overrides: dict[str, str] | None = None,
    panels: int = 4,
) -> Path:
    """Write figures (PNG and SVG), ``statistics.json`` and ``report.md`` for a sweep; returns report.md.

    ``pairs`` (control, harmonized) add to the sweep's own ``pairs.csv``.
    """
    store, out = SweepFolder(sweep_dir), Path(out_dir)
    if not store.root.is_dir():
        raise FileNotFoundError(f"sweep folder {str(store.root)!r} does not exist")
    pairs = [*store.read_pairs(), *pairs]
    scored: list[ModelResult] = []
    try:
        results, failed = load_results(store.root, accuracy_csv, pairs, arch_overrides)
    except FileNotFoundError:  # no attack: models measured for human alignment alone, or nothing
        scored = load_scored(store.root, accuracy_csv, pairs, arch_overrides)
        if not scored:
            raise
    one_stimulus_set(scored or results, store.root)
    if out.exists() and not out.is_dir():
        raise SweepError(f"{out}: is a file, not a folder")
    if scored:
        return _scored_report(store, out, scored, pairs)
    by_attack = {
        a: [r for r in results if r.attack == a] for a in ATTACK_REGISTRY if any(r.attack == a for r in results)
    }
    md = [
        "# Adversarial alignment report",
        "",
        f"Sweep `{store.root}`: {len({r.label for r in results})} models finished, {len(failed)} failed. "
        "Tolerance is the mean perturbation norm of the fooled images in the attack's norm ([0, 1] pixel "
        "units), alignment the mean Spearman correlation of |mean over channels of delta| with the human "
        "map; ± is the standard error. Correlations are across models; the t-tests compare ViTs with CNNs. "
        "A model whose accuracy on the stimuli is near chance is marked unreliable and left out of both.",
        "",
    ]
    all_stats = {}
    for attack, chosen in by_attack.items():
        all_stats[attack], lines = _attack_section(
            attack, chosen, by_attack.get("l2_pgd", []), pairs, store, out, panels
        )
        md += lines
    if failed:
        md += ["## Failed models", "", "| model | attack | error |", "|---|---|---|"]
        md += [
            f"| {f['model']} | {f['attack']} | {f['error_type']}: {' '.join(str(f['message']).split())[:200]} |"
            for f in failed
        ]
        md.append("")
    write_json(out / "statistics.json", all_stats)
    write_text(out / "report.md", "\n".join(md))
    return out / "report.md"
