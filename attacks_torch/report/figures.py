"""The report's figures: scatters with error bars, arrows and a Pareto front, and perturbation panels."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from attacks_torch.report.results import ModelResult
from attacks_torch.sweep import SweepFolder
from attacks_torch.sweep.human_store import HumanFolder
from harmonization.files import temporary_path
from harmonization.metrics import model_correlation

COLORS = {"CNN": "tab:blue", "ViT": "tab:red", "hybrid": "tab:green"}


def pareto_front(x: Sequence[float], y: Sequence[float]) -> list[int]:
    """Indices of the points no other point beats in both x and y (larger is better), by x."""
    points = [(xi, yi, i) for i, (xi, yi) in enumerate(zip(x, y)) if math.isfinite(xi) and math.isfinite(yi)]
    front, best_y = [], -math.inf
    for _x, yi, i in sorted(points, key=lambda p: (-p[0], -p[1])):
        if yi > best_y:
            front.append(i)
            best_y = yi
    return sorted(front, key=lambda i: x[i])


def save_figure(figure: Figure, out: Path, name: str) -> list[str]:
    figure.tight_layout()
    files = []
    for suffix in ("png", "svg"):
        path = out / f"{name}.{suffix}"
        with temporary_path(path, suffix=f".{suffix}") as tmp:
            figure.savefig(tmp, dpi=150 if suffix == "png" else None)
        files.append(path.name)
    return files


def number_text(value: float, sem: float | None = None, digits: int = 3) -> str:
    """``value`` (± ``sem``) with ``digits`` decimals; "n/a" when it is not a number."""
    if value is None or not math.isfinite(value):
        return "n/a"
    text = f"{value:.{digits}f}"
    return text if sem is None or not math.isfinite(sem) else f"{text} ± {sem:.{digits}f}"


def _finite(value: float) -> float:
    return value if math.isfinite(value) else 0.0


def accuracy_point(r: ModelResult) -> tuple[float, float]:
    return r.accuracy, 0.0


def tolerance_point(r: ModelResult) -> tuple[float, float]:
    return r.tolerance, r.tolerance_sem


def alignment_point(r: ModelResult) -> tuple[float, float]:
    return r.alignment, r.alignment_sem


def scatter(
    results: Sequence[ModelResult],
    x_of,
    y_of,
    x_label: str,
    y_label: str,
    title: str,
    pairs: Sequence[tuple[str, str]],
    front: bool = False,
) -> Figure:
    """Each model at (x_of, y_of) with its standard errors, coloured by class; unreliable models as
    grey crosses, kept out of the arrows (control -> harmonized) and of the Pareto front."""
    figure = Figure(figsize=(6.4, 4.8))
    axes = figure.add_subplot()
    unreliable = [r for r in results if r.unreliable is not None]
    if unreliable:
        axes.scatter(
            [x_of(r)[0] for r in unreliable],
            [y_of(r)[0] for r in unreliable],
            marker="x",
            color="gray",
            label=f"unreliable: near chance ({len(unreliable)})",
        )
    results = [r for r in results if r.unreliable is None]
    for arch, color in COLORS.items():
        chosen = [r for r in results if r.arch == arch]
        if not chosen:
            continue
        xs, xerr = zip(*(x_of(r) for r in chosen))
        ys, yerr = zip(*(y_of(r) for r in chosen))
        axes.errorbar(
            xs,
            ys,
            xerr=[_finite(e) for e in xerr],
            yerr=[_finite(e) for e in yerr],
            fmt="o",
            color=color,
            ecolor=color,
            alpha=0.85,
            capsize=2,
            label=f"{arch} ({len(chosen)})",
        )
    if len(results) + len(unreliable) <= 30:
        for r in [*results, *unreliable]:
            axes.annotate(r.label, (x_of(r)[0], y_of(r)[0]), fontsize=6, xytext=(3, 3), textcoords="offset points")
    by_label = {r.label: r for r in results}
    for control, harmonized in pairs:
        if control in by_label and harmonized in by_label:
            start, end = by_label[control], by_label[harmonized]
            axes.annotate(
                "",
                xy=(x_of(end)[0], y_of(end)[0]),
                xytext=(x_of(start)[0], y_of(start)[0]),
                arrowprops={"arrowstyle": "->", "color": "black", "lw": 1.2},
            )
    if front:
        index = pareto_front([x_of(r)[0] for r in results], [y_of(r)[0] for r in results])
        if index:
            axes.step(
                [x_of(results[i])[0] for i in index],
                [y_of(results[i])[0] for i in index],
                where="post",
                color="gray",
                linestyle="--",
                label="Pareto front",
            )
    axes.set_xlabel(x_label)
    axes.set_ylabel(y_label)
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=7)
    return figure


def _perturbation_label(r: ModelResult, rows: list[dict[str, str]], row: int) -> str:
    """The model's label with the image's eps and adversarial alignment (Spearman) when it was fooled."""
    if row >= len(rows) or rows[row]["fooled"] != "True":
        return r.label
    return f"{r.label}\neps {float(rows[row]['eps']):.3g}, rho {float(rows[row]['alignment']):.2f}"


def panels_figure(store: SweepFolder, results: Sequence[ModelResult], count: int) -> Figure | None:
    """Image, human map, and per model the perturbation (labelled with eps and Spearman) and, when the
    sweep measured human alignment, the saliency map beside it."""
    preview = store.read_preview() if count >= 1 and results else None
    if preview is None:
        return None
    count = min(count, len(preview["ids"]))
    saliency = {
        r.label: HumanFolder(store.root, r.folder.path.parent.name) for r in results if math.isfinite(r.human_alignment)
    }
    rows = {r.label: r.folder.read_results() for r in results}
    columns = 2 + len(results) + len(saliency)
    figure = Figure(figsize=(1.6 * columns, 1.9 * count))
    for row in range(count):
        image = preview["images"][row].transpose(1, 2, 0)
        cells = [("image", image, None), ("human map", preview["heatmaps"][row], "viridis")]
        for r in results:
            shown = preview["stimuli_sha256"]
            same = None in (r.stimuli_sha256, shown) or r.stimuli_sha256 == shown
            cells.append(
                (
                    _perturbation_label(r, rows[r.label], row),
                    r.folder.read_map(row) if same else "attacked on\nother stimuli",
                    "magma",
                )
            )
            if r.label in saliency:
                human = rows[r.label][row].get("human_alignment", "") if row < len(rows[r.label]) else ""
                title = f"{r.label} saliency" + (f"\nrho {float(human):.2f}" if human else "")
                cells.append((title, saliency[r.label].read_map(row) if same else None, "magma"))
        for column, (title, data, cmap) in enumerate(cells):
            axes = figure.add_subplot(count, columns, row * columns + column + 1)
            axes.set_xticks([])
            axes.set_yticks([])
            if data is None or isinstance(data, str):
                axes.text(0.5, 0.5, data or "not fooled\nor misclassified", ha="center", va="center", fontsize=6)
            else:
                axes.imshow(np.clip(data, 0, 1) if cmap is None else data, cmap=cmap)
            if row == 0 or "\n" in title:
                axes.set_title(title, fontsize=5)
    return figure


def versus(
    chosen: Sequence[ModelResult],
    reference: dict[str, ModelResult],
    attack: str,
    measure: str,
) -> tuple[dict[str, float], Figure]:
    """The same models' ``measure`` under ``attack`` against l2_pgd: Spearman rho and a scatter (Fig. S4, S5)."""
    common = [r for r in chosen if r.label in reference]
    stats = model_correlation(
        [getattr(reference[r.label], measure) for r in common], [getattr(r, measure) for r in common]
    )

    def on_l2_pgd(r: ModelResult) -> tuple[float, float]:
        return getattr(reference[r.label], measure), getattr(reference[r.label], f"{measure}_sem")

    def on_attack(r: ModelResult) -> tuple[float, float]:
        return getattr(r, measure), getattr(r, f"{measure}_sem")

    figure = scatter(
        common,
        on_l2_pgd,
        on_attack,
        f"l2_pgd {measure}",
        f"{attack} {measure}",
        f"{attack} vs l2_pgd: {measure} (rho = {number_text(stats['rho'])})",
        [],
    )
    return stats, figure
