"""The finished results of a sweep as the report uses them: one :class:`ModelResult` per model and
attack, its class (CNN, ViT, hybrid), whether it is reliable, and the statistics across models."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

from attacks_torch import zoo
from attacks_torch.models import model_kind, parse_published
from attacks_torch.report.accuracy import lookup_accuracy, read_accuracy_csv
from attacks_torch.sweep import ModelFolder, SweepError, SweepFolder
from harmonization.metrics import chance_threshold, compare_groups, model_correlation, near_chance

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
    """The width of the model's head (None: not recorded)."""
    data_classes: int | None = None
    """The number of classes among the stimuli's labels (None: not recorded)."""
    stimuli_sha256: str | None = None
    """The content hash of the stimuli the model was attacked on (None for summaries without it)."""
    unreliable: str | None = None
    """Why the model's tolerance and alignment are not to be trusted (None: they are)."""
    human_alignment: float = math.nan
    """Mean Spearman of the logit saliency with the human maps (``attacks_torch.human``; NaN: not measured)."""
    human_alignment_sem: float = math.nan
    human_alignment_score: float = math.nan
    """``human_alignment`` over the human ceiling: the Harmonization paper's alignment score."""
    gaming: bool | None = None


def parse_arch_overrides(argument: str) -> dict[str, str]:
    """``LABEL=CLASS`` items (comma-separated) -> {label: "CNN" | "ViT" | "hybrid"}."""
    overrides = {}
    for item in (part.strip() for part in argument.split(",") if part.strip()):
        label, sep, arch = item.partition("=")
        known = {a.lower(): a for a in zoo.ARCH_CLASSES}
        if not sep or arch.strip().lower() not in known:
            raise SweepError.about("arch_overrides", f": {item!r} is not LABEL=CNN|ViT|hybrid")
        overrides[label.strip()] = known[arch.strip().lower()]
    return overrides


def _classify(
    label: str, spec: str, pairs: Sequence[tuple[str, str]], overrides: dict[str, str], specs: dict[str, str]
) -> str:
    if label in overrides:
        return overrides[label]
    for control, harmonized in pairs:
        if harmonized == label and control != label:
            return _classify(control, specs.get(control, control), [], overrides, specs)
    if model_kind(spec) == "published":  # published:NAME:PATH is classed by its architecture NAME
        return zoo.classify(parse_published(spec)[0])
    return zoo.classify(spec)


def classes_for_chance(num_classes: int | None, data_classes: int | None) -> int | None:
    """The classes chance is judged from: those in the stimuli's labels, the head's width bounding
    them (a model cannot answer more classes than its head has); None when neither is known."""
    known = [n for n in (data_classes, num_classes) if n is not None]
    return min(known) if known else None


def wider_head(num_classes: int | None, data_classes: int | None) -> str | None:
    """A note when the model's head has more units than the stimuli have classes, else None."""
    if num_classes is not None and data_classes is not None and num_classes > data_classes:
        return f"head of {num_classes} units, {data_classes} classes in the stimuli"
    return None


def unreliable_reason(accuracy: float, num_classes: int | None, data_classes: int | None = None) -> str | None:
    """Why results at stimulus ``accuracy`` (a fraction) of a model with a ``num_classes``-unit head on
    stimuli of ``data_classes`` classes are unreliable, or None (chance: :func:`classes_for_chance`)."""
    classes = classes_for_chance(num_classes, data_classes)
    if classes is None:
        return None
    if classes < 2:
        return "the stimuli hold one class only: accuracy cannot tell a trained model from a constant answer"
    if near_chance(accuracy, classes):
        return (
            f"accuracy {accuracy:.3f} on the stimuli is near chance ({1 / classes:.3f} for {classes} "
            f"classes; below {chance_threshold(classes):.3f})"
        )
    return None


def _data_classes(folder: ModelFolder, summary: dict) -> int | None:
    """The stimuli's class count from the summary, else from results.csv's labels (older sweeps)."""
    if isinstance(summary.get("data_classes"), int):
        return summary["data_classes"]
    if not folder.results.exists():
        return None
    return len({row["label"] for row in folder.read_results()})


def human_fields(summary: dict) -> dict:
    """The ModelResult fields of a summary's human alignment (none for a summary without it)."""
    human = summary.get("human_alignment") or {}
    if not human:
        return {}
    return {
        "human_alignment": human["mean"],
        "human_alignment_sem": human["sem"],
        "human_alignment_score": human["score"],
        "gaming": (summary.get("human") or {}).get("gaming"),
    }


def load_results(
    sweep_dir: str | os.PathLike,
    accuracy_csv: str | os.PathLike | None = None,
    pairs: Sequence[tuple[str, str]] = (),
    arch_overrides: dict[str, str] | None = None,
) -> tuple[list[ModelResult], list[dict]]:
    """The finished (model, attack) results of a sweep folder, and the failed ones' records."""
    store = SweepFolder(sweep_dir)
    finished, failed = store.finished(), store.failures()
    if not finished and not failed:
        raise FileNotFoundError(f"{store.root}: no finished model (no model folder holds a summary.json)")
    table = read_accuracy_csv(accuracy_csv) if accuracy_csv else {}
    specs = {s["model"]: s["spec"] for _, s in finished}
    overrides = arch_overrides or {}
    results = []
    for folder, s in finished:
        given = lookup_accuracy(table, s["spec"])
        given = lookup_accuracy(table, s["model"]) if given is None else given
        tolerance = s[TOLERANCE_MEASURE.get(s["norm"], "l2")]
        num_classes, data_classes = s.get("num_classes"), _data_classes(folder, s)
        results.append(
            ModelResult(
                label=s["model"],
                spec=s["spec"],
                attack=s["attack"],
                norm=s["norm"],
                arch=_classify(s["model"], s["spec"], pairs, overrides, specs),
                accuracy=100.0 * s["accuracy"] if given is None else given,
                accuracy_source="stimuli" if given is None else "csv",
                n_images=s["n_images"],
                n_attacked=s["n_attacked"],
                n_fooled=s["n_fooled"],
                tolerance=tolerance["mean"],
                tolerance_sem=tolerance["sem"],
                alignment=s["alignment"]["mean"],
                alignment_sem=s["alignment"]["sem"],
                linf=s["linf"]["mean"],
                linf_sem=s["linf"]["sem"],
                folder=folder,
                stimulus_accuracy=s["accuracy"],
                num_classes=num_classes,
                data_classes=data_classes,
                stimuli_sha256=((s.get("config") or {}).get("stimuli") or {}).get("sha256"),
                unreliable=unreliable_reason(s["accuracy"], num_classes, data_classes),
                **human_fields(s),
            )
        )
    return results, failed


def one_stimulus_set(results: Sequence[ModelResult], where: str | os.PathLike) -> None:
    """Refuse (a SweepError in one line) results attacked on different stimulus sets: their images,
    and so their accuracies and measures, are not comparable in one table or one correlation."""
    sets: dict[str, list[str]] = {}
    for r in results:
        if r.stimuli_sha256 is not None:
            sets.setdefault(r.stimuli_sha256, []).append(f"{r.label}/{r.attack}")
    if len(sets) > 1:
        listed = "; ".join(f"{sha[:12]}: {', '.join(labels)}" for sha, labels in sets.items())
        raise SweepError(
            f"{where}: holds sweeps of {len(sets)} different stimulus sets ({listed}); "
            "report each set from its own folder"
        )


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
