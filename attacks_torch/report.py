"""The paper's figures, statistics and tables from a finished sweep folder.

Per attack found in the sweep (l2_pgd gives Fig. 2-4, linf_pgd Fig. S3, cw_l2 with l2_pgd Fig. S4-S5):
- ``<attack>_accuracy_vs_tolerance``: accuracy vs perturbation tolerance (mean perturbation norm of
  the fooled images, in the attack's norm, [0, 1] pixel units), standard-error bars (Fig. 2, S3);
- ``<attack>_accuracy_vs_alignment``: accuracy vs adversarial alignment (Fig. 3);
- ``<attack>_tolerance_vs_alignment``: the trade-off with its Pareto front (Fig. 4);
- ``<attack>_vs_l2_pgd_tolerance`` / ``_alignment``: the same models under two attacks (Fig. S4, S5);
- ``<attack>_panels``: image, human map and each model's |mean over channels of delta| (Fig. 1, 5).
Points are coloured by class (CNN, ViT, hybrid); arrows go from each control to its harmonized
model. Statistics (``harmonization.metrics``): Spearman rho and p across models, Welch's t-test
of ViTs against CNNs. Accuracy is the top-1 of the ``--accuracy`` CSV (timm's results format)
when the model is in it, else the accuracy measured on the stimuli (the table says which).

A model whose accuracy on the stimuli is near chance (``harmonization.metrics.near_chance``) is
unreliable: a network that has learnt nothing can look tolerant and aligned. It stays in the table
with the reason beside it, but is left out of the statistics and of the control -> harmonized
arrows, and ``statistics.json`` lists it under ``unreliable``. The sweep folder is read only
through :class:`attacks_torch.sweep.SweepFolder`; every file is written atomically.
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from attacks_torch import zoo
from attacks_torch.attacks.registry import ATTACK_REGISTRY
from attacks_torch.sweep import ModelFolder, SweepError, SweepFolder
from harmonization.files import temporary_path, write_json, write_text
from harmonization.metrics import chance_threshold, compare_groups, model_correlation, near_chance

COLORS = {"CNN": "tab:blue", "ViT": "tab:red", "hybrid": "tab:green"}
TOLERANCE_MEASURE = {"linf": "linf"}  # a norm's tolerance measure; every other norm uses "l2"


@dataclass
class ModelResult:
    """One model under one attack, as the report uses it."""

    label: str
    spec: str
    attack: str
    norm: str
    arch: str
    accuracy: float
    accuracy_source: str
    n_images: int
    n_attacked: int
    n_fooled: int
    tolerance: float
    tolerance_sem: float
    alignment: float
    alignment_sem: float
    linf: float
    linf_sem: float
    folder: ModelFolder
    stimulus_accuracy: float
    num_classes: int | None
    unreliable: str | None = None
    """Why the model's tolerance and alignment are not to be trusted (None: they are)."""


def parse_arch_overrides(argument: str) -> dict[str, str]:
    """``LABEL=CLASS`` items (comma-separated) -> {label: "CNN" | "ViT" | "hybrid"}."""
    overrides = {}
    for item in (part.strip() for part in argument.split(",") if part.strip()):
        label, sep, arch = item.partition("=")
        known = {a.lower(): a for a in zoo.ARCH_CLASSES}
        if not sep or arch.strip().lower() not in known:
            raise SweepError(f"--arch: {item!r} is not LABEL=CNN|ViT|hybrid")
        overrides[label.strip()] = known[arch.strip().lower()]
    return overrides


def _classify(label: str, spec: str, pairs: Sequence[tuple[str, str]], overrides: dict[str, str],
              specs: dict[str, str]) -> str:
    if label in overrides:
        return overrides[label]
    for control, harmonized in pairs:
        if harmonized == label and control != label:
            return _classify(control, specs.get(control, control), [], overrides, specs)
    return zoo.classify(spec)


def unreliable_reason(accuracy: float, num_classes: int | None) -> str | None:
    """Why results at stimulus ``accuracy`` (a fraction) of a ``num_classes``-way model are unreliable, or None."""
    if num_classes is None or num_classes < 2:
        return None
    if near_chance(accuracy, num_classes):
        return (f"accuracy {accuracy:.3f} on the stimuli is near chance ({1 / num_classes:.3f} for {num_classes} "
                f"classes; below {chance_threshold(num_classes):.3f})")
    return None


def load_results(sweep_dir: str | os.PathLike, accuracy_csv: str | os.PathLike | None = None,
                 pairs: Sequence[tuple[str, str]] = (), arch_overrides: dict[str, str] | None = None,
                 ) -> tuple[list[ModelResult], list[dict]]:
    """The finished (model, attack) results of a sweep folder, and the failed ones' records."""
    store = SweepFolder(sweep_dir)
    finished, failed = store.finished(), store.failures()
    if not finished and not failed:
        raise FileNotFoundError(f"{store.root}: no finished model (no model folder holds a summary.json)")
    table = zoo.read_accuracy_csv(accuracy_csv) if accuracy_csv else {}
    specs = {s["model"]: s["spec"] for _, s in finished}
    overrides = arch_overrides or {}
    results = []
    for folder, s in finished:
        given = zoo.lookup_accuracy(table, s["spec"])
        given = zoo.lookup_accuracy(table, s["model"]) if given is None else given
        tolerance = s[TOLERANCE_MEASURE.get(s["norm"], "l2")]
        num_classes = s.get("num_classes")
        results.append(ModelResult(
            label=s["model"], spec=s["spec"], attack=s["attack"], norm=s["norm"],
            arch=_classify(s["model"], s["spec"], pairs, overrides, specs),
            accuracy=100.0 * s["accuracy"] if given is None else given,
            accuracy_source="stimuli" if given is None else "csv",
            n_images=s["n_images"], n_attacked=s["n_attacked"], n_fooled=s["n_fooled"],
            tolerance=tolerance["mean"], tolerance_sem=tolerance["sem"],
            alignment=s["alignment"]["mean"], alignment_sem=s["alignment"]["sem"],
            linf=s["linf"]["mean"], linf_sem=s["linf"]["sem"], folder=folder,
            stimulus_accuracy=s["accuracy"], num_classes=num_classes,
            unreliable=unreliable_reason(s["accuracy"], num_classes),
        ))
    return results, failed


def pareto_front(x: Sequence[float], y: Sequence[float]) -> list[int]:
    """Indices of the points no other point beats in both x and y (larger is better), by x."""
    points = [(xi, yi, i) for i, (xi, yi) in enumerate(zip(x, y)) if math.isfinite(xi) and math.isfinite(yi)]
    front, best_y = [], -math.inf
    for xi, yi, i in sorted(points, key=lambda p: (-p[0], -p[1])):
        if yi > best_y:
            front.append(i)
            best_y = yi
    return sorted(front, key=lambda i: x[i])


def statistics(results: Sequence[ModelResult]) -> dict[str, dict[str, float]]:
    """Spearman rho/p across models and Welch's t-tests (ViT against CNN) for one attack's results
    (the caller leaves unreliable models out)."""
    accuracy = [r.accuracy for r in results]
    tolerance = [r.tolerance for r in results]
    alignment = [r.alignment for r in results]

    def group(arch: str, values: list[float]) -> list[float]:
        return [v for r, v in zip(results, values) if r.arch == arch]

    return {
        "accuracy_vs_tolerance": model_correlation(accuracy, tolerance),
        "accuracy_vs_alignment": model_correlation(accuracy, alignment),
        "tolerance_vs_alignment": model_correlation(tolerance, alignment),
        "tolerance_vit_vs_cnn": compare_groups(group("ViT", tolerance), group("CNN", tolerance)),
        "alignment_vit_vs_cnn": compare_groups(group("ViT", alignment), group("CNN", alignment)),
    }


def _save(figure: Figure, out: Path, name: str) -> list[str]:
    figure.tight_layout()
    files = []
    for suffix in ("png", "svg"):
        path = out / f"{name}.{suffix}"
        with temporary_path(path, suffix=f".{suffix}") as tmp:
            figure.savefig(tmp, dpi=150 if suffix == "png" else None)
        files.append(path.name)
    return files


def _finite(value: float) -> float:
    return value if math.isfinite(value) else 0.0


def _accuracy(r: ModelResult) -> tuple[float, float]:
    return r.accuracy, 0.0


def _tolerance(r: ModelResult) -> tuple[float, float]:
    return r.tolerance, r.tolerance_sem


def _alignment(r: ModelResult) -> tuple[float, float]:
    return r.alignment, r.alignment_sem


def _scatter(results: Sequence[ModelResult], x_of, y_of, x_label: str, y_label: str, title: str,
             pairs: Sequence[tuple[str, str]], front: bool = False) -> Figure:
    figure = Figure(figsize=(6.4, 4.8))
    axes = figure.add_subplot()
    for arch, color in COLORS.items():
        chosen = [r for r in results if r.arch == arch]
        if not chosen:
            continue
        xs, xerr = zip(*(x_of(r) for r in chosen))
        ys, yerr = zip(*(y_of(r) for r in chosen))
        axes.errorbar(xs, ys, xerr=[_finite(e) for e in xerr], yerr=[_finite(e) for e in yerr], fmt="o",
                      color=color, ecolor=color, alpha=0.85, capsize=2, label=f"{arch} ({len(chosen)})")
    if len(results) <= 30:
        for r in results:
            axes.annotate(r.label, (x_of(r)[0], y_of(r)[0]), fontsize=6, xytext=(3, 3), textcoords="offset points")
    by_label = {r.label: r for r in results if r.unreliable is None}
    for control, harmonized in pairs:
        if control in by_label and harmonized in by_label:
            start, end = by_label[control], by_label[harmonized]
            axes.annotate("", xy=(x_of(end)[0], y_of(end)[0]), xytext=(x_of(start)[0], y_of(start)[0]),
                          arrowprops={"arrowstyle": "->", "color": "black", "lw": 1.2})
    if front:
        index = pareto_front([x_of(r)[0] for r in results], [y_of(r)[0] for r in results])
        if index:
            axes.step([x_of(results[i])[0] for i in index], [y_of(results[i])[0] for i in index], where="post",
                      color="gray", linestyle="--", label="Pareto front")
    axes.set_xlabel(x_label)
    axes.set_ylabel(y_label)
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=7)
    return figure


def _panels(store: SweepFolder, results: Sequence[ModelResult], count: int) -> Figure | None:
    preview = store.read_preview() if count >= 1 and results else None
    if preview is None:
        return None
    count = min(count, len(preview["ids"]))
    columns = 2 + len(results)
    figure = Figure(figsize=(1.6 * columns, 1.7 * count))
    for row in range(count):
        image = preview["images"][row].transpose(1, 2, 0)
        cells = [("image", image, None), ("human map", preview["heatmaps"][row], "viridis")]
        for r in results:
            cells.append((r.label, r.folder.read_map(row), "magma"))
        for column, (title, data, cmap) in enumerate(cells):
            axes = figure.add_subplot(count, columns, row * columns + column + 1)
            axes.set_xticks([])
            axes.set_yticks([])
            if data is None:
                axes.text(0.5, 0.5, "not fooled\nor misclassified", ha="center", va="center", fontsize=6)
            else:
                axes.imshow(np.clip(data, 0, 1) if cmap is None else data, cmap=cmap)
            if row == 0:
                axes.set_title(title, fontsize=6)
    return figure


def _number(value: float, sem: float | None = None, digits: int = 3) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    text = f"{value:.{digits}f}"
    return text if sem is None or not math.isfinite(sem) else f"{text} ± {sem:.{digits}f}"


def _p(value: float) -> str:
    return f"{value:.3g}" if math.isfinite(value) else "n/a"


def _statistics_markdown(stats: dict[str, dict[str, float]]) -> list[str]:
    lines = ["| test | statistic | p | n or df |", "|---|---|---|---|"]
    for name, values in stats.items():
        if "rho" in values:
            lines.append(f"| Spearman {name.replace('_', ' ')} | rho = {_number(values['rho'])} | "
                         f"{_p(values['p'])} | n = {values['n']} |")
        else:
            lines.append(f"| Welch t-test {name.replace('_', ' ')} | t = {_number(values['t'])} | "
                         f"{_p(values['p'])} | df = {_number(values['df'], digits=1)} |")
    return lines


def _models_markdown(results: Sequence[ModelResult]) -> list[str]:
    lines = ["| model | class | accuracy (%) | source | images | attacked | fooled | tolerance | L-inf | alignment "
             "| reliable |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(results, key=lambda r: r.label):
        reliable = "yes" if r.unreliable is None else f"no: {r.unreliable}; left out of the statistics"
        lines.append(f"| {r.label} | {r.arch} | {_number(r.accuracy, digits=2)} | {r.accuracy_source} | "
                     f"{r.n_images} | {r.n_attacked} | {r.n_fooled} | {_number(r.tolerance, r.tolerance_sem)} | "
                     f"{_number(r.linf, r.linf_sem)} | {_number(r.alignment, r.alignment_sem)} | {reliable} |")
    return lines


def _versus(chosen: Sequence[ModelResult], reference: dict[str, ModelResult], attack: str, measure: str,
            ) -> tuple[dict[str, float], Figure]:
    """The same models' ``measure`` under ``attack`` against l2_pgd: Spearman rho and a scatter (Fig. S4, S5)."""
    common = [r for r in chosen if r.label in reference]
    stats = model_correlation([getattr(reference[r.label], measure) for r in common],
                              [getattr(r, measure) for r in common])

    def on_l2_pgd(r: ModelResult) -> tuple[float, float]:
        return getattr(reference[r.label], measure), getattr(reference[r.label], f"{measure}_sem")

    def on_attack(r: ModelResult) -> tuple[float, float]:
        return getattr(r, measure), getattr(r, f"{measure}_sem")

    figure = _scatter(common, on_l2_pgd, on_attack, f"l2_pgd {measure}", f"{attack} {measure}",
                      f"{attack} vs l2_pgd: {measure} (rho = {_number(stats['rho'])})", [])
    return stats, figure


def _attack_section(attack: str, chosen: Sequence[ModelResult], reference: Sequence[ModelResult],
                    pairs: Sequence[tuple[str, str]], store: SweepFolder, out: Path, panels: int,
                    ) -> tuple[dict, list[str]]:
    """Figures of one attack written to ``out``; returns its statistics and its report.md lines."""
    tolerance_label = f"perturbation tolerance ({'L-inf' if chosen[0].norm == 'linf' else 'L2'})"
    reliable = [r for r in chosen if r.unreliable is None]
    stats: dict = statistics(reliable)
    figures = [
        ("accuracy_vs_tolerance", _scatter(chosen, _accuracy, _tolerance, "accuracy (%)", tolerance_label,
                                           f"{attack}: accuracy vs tolerance", pairs)),
        ("accuracy_vs_alignment", _scatter(chosen, _accuracy, _alignment, "accuracy (%)", "adversarial alignment",
                                           f"{attack}: accuracy vs alignment", pairs)),
        ("tolerance_vs_alignment", _scatter(chosen, _tolerance, _alignment, tolerance_label,
                                            "adversarial alignment", f"{attack}: the trade-off", pairs, front=True)),
    ]
    if attack != "l2_pgd" and reference:
        for measure in ("tolerance", "alignment"):
            stats[f"{measure}_vs_l2_pgd"], figure = _versus(
                reliable, {r.label: r for r in reference if r.unreliable is None}, attack, measure)
            figures.append((f"vs_l2_pgd_{measure}", figure))
    panel = _panels(store, chosen, panels)
    if panel is not None:
        figures.append(("panels", panel))
    md = [f"## {attack}", "", *_statistics_markdown(stats), ""]
    unreliable = {r.label: r.unreliable for r in chosen if r.unreliable is not None}
    if unreliable:
        md += [f"Left out of the statistics and the arrows as unreliable: "
               f"{'; '.join(f'{label} ({why})' for label, why in unreliable.items())}.", ""]
    stats["unreliable"] = unreliable
    for name, figure in figures:
        png, svg = _save(figure, out, f"{attack}_{name}")
        md += [f"![{attack} {name.replace('_', ' ')}]({png}) ([svg]({svg}))", ""]
    md += ["### Models", "", *_models_markdown(chosen), ""]
    return stats, md


def build_report(sweep_dir: str | os.PathLike, out_dir: str | os.PathLike,
                 accuracy_csv: str | os.PathLike | None = None, pairs: Sequence[tuple[str, str]] = (),
                 arch_overrides: dict[str, str] | None = None, panels: int = 4) -> Path:
    """Write figures (PNG and SVG), ``statistics.json`` and ``report.md`` for a sweep; returns report.md.

    ``pairs`` (control, harmonized) add to the sweep's own ``pairs.csv``.
    """
    store, out = SweepFolder(sweep_dir), Path(out_dir)
    if not store.root.is_dir():
        raise FileNotFoundError(f"sweep folder {str(store.root)!r} does not exist")
    pairs = [*store.read_pairs(), *pairs]
    results, failed = load_results(store.root, accuracy_csv, pairs, arch_overrides)
    if out.exists() and not out.is_dir():
        raise SweepError(f"{out}: is a file, not a folder")
    by_attack = {a: [r for r in results if r.attack == a] for a in ATTACK_REGISTRY if any(r.attack == a for r in results)}
    md = ["# Adversarial alignment report", "",
          f"Sweep `{store.root}`: {len({r.label for r in results})} models finished, {len(failed)} failed. "
          "Tolerance is the mean perturbation norm of the fooled images in the attack's norm ([0, 1] pixel "
          "units), alignment the mean Spearman correlation of |mean over channels of delta| with the human "
          "map; ± is the standard error. Correlations are across models; the t-tests compare ViTs with CNNs. "
          "A model whose accuracy on the stimuli is near chance is marked unreliable and left out of both.", ""]
    all_stats = {}
    for attack, chosen in by_attack.items():
        all_stats[attack], lines = _attack_section(attack, chosen, by_attack.get("l2_pgd", []), pairs, store, out,
                                                   panels)
        md += lines
    if failed:
        md += ["## Failed models", "", "| model | attack | error |", "|---|---|---|"]
        md += [f"| {f['model']} | {f['attack']} | {f['error_type']}: {' '.join(str(f['message']).split())[:200]} |"
               for f in failed]
        md.append("")
    write_json(out / "statistics.json", all_stats)
    write_text(out / "report.md", "\n".join(md))
    return out / "report.md"
