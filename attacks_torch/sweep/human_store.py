"""Human alignment in the sweep folder: one per model, whatever the attack (``attacks_torch.human``).

    OUT/<model slug>/human/config.json          the fingerprint that fixes the rows (checked on resume)
    OUT/<model slug>/human/batches/000000.csv   the rows of one committed batch (by first index)
    OUT/<model slug>/human/model.json           the width of the model's logits
    OUT/<model slug>/human/maps/000000.npy      the logit saliency of one of the first stimuli (report panels)
    OUT/<model slug>/human/scores.csv           every row, in stimulus order, when complete
    OUT/<model slug>/human/scores.json          ``harmonize evaluate``'s numbers for the model
    OUT/human.csv                               one row per scored model (rebuilt under the lock)

Batches are written and read back as in :mod:`attacks_torch.sweep.store` (atomically; a batch file cut
short counts as not written). :func:`merge_into` puts the per-image measures into an attack's
results.csv and their summaries into its summary.json (and so summary.csv).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from attacks_torch.human import HumanAlignment
from attacks_torch.models import model_identity
from attacks_torch.sweep.config import SweepConfig
from attacks_torch.sweep.errors import SweepError
from attacks_torch.sweep.specs import ModelSpec
from attacks_torch.sweep.store import ModelFolder, SweepFolder
from attacks_torch.sweep.tables import HUMAN_MEASURES, csv_text, read_json, read_table
from harmonization.alignment import PER_IMAGE, alignment_result, output_activation
from harmonization.files import write_json, write_text

FORMAT = 1
"""Version of the human folder's layout and definition; a folder of another one is not resumed."""
PERCENTILE = 10
"""Dice and IoU compare the top 10 % pixels, as ``harmonize evaluate`` does by default."""
SCORE_COLUMNS = (
    "model",
    "image_id",
    "label",
    "prediction",
    "correct",
    "mapped",
    *HUMAN_MEASURES,
    "human_dice",
    "human_iou",
    "forward_passes",
    "backward_passes",
)
_PER_IMAGE_COLUMNS = dict(zip(PER_IMAGE, (*HUMAN_MEASURES, "human_dice", "human_iou")))
TABLE_COLUMNS = (
    "model",
    "spec",
    "n_images",
    "mapped",
    "accuracy",
    "num_classes",
    "near_chance",
    *(f"{m}_{s}" for m in HUMAN_MEASURES for s in ("mean", "sem", "score")),
    "dice",
    "iou",
    "gaming_gap",
    "gaming",
    "forward_passes",
    "backward_passes",
)


def human_fingerprint(spec: ModelSpec, config: SweepConfig, stimuli: dict[str, Any]) -> dict[str, Any]:
    """What fixes a model's human-alignment rows: its content, the stimuli's, the batch size and the
    definition's version (raises what ``model_identity`` raises for a missing model file)."""
    model = model_identity(spec.spec, **spec.load_arguments(config.weights, config.num_classes, config.seed))
    data = {
        "format": FORMAT,
        "model": model,
        "stimuli": stimuli,
        "batch_size": config.batch_size,
        "percentile": PERCENTILE,
    }
    return json.loads(json.dumps(data))


class HumanFolder:
    """The human-alignment files of one model: ``OUT/<slug>/human/``."""

    def __init__(self, root: str | Path, slug: str) -> None:
        self.path = Path(root) / slug / "human"
        self.config = self.path / "config.json"
        self.scores = self.path / "scores.csv"
        self.summary = self.path / "scores.json"
        self.model_info = self.path / "model.json"

    def batch_path(self, start: int) -> Path:
        return self.path / "batches" / f"{start:06d}.csv"

    def has_results(self) -> bool:
        return self.scores.exists() or self.summary.exists() or any((self.path / "batches").glob("*.csv"))

    def remove(self) -> None:
        ModelFolder(self.path).remove()

    def read_config(self) -> dict[str, Any] | None:
        return read_json(self.config) if self.config.exists() else None

    def write_config(self, fingerprint: dict[str, Any]) -> None:
        write_json(self.config, fingerprint)

    def write_map(self, index: int, saliency: np.ndarray) -> None:
        ModelFolder(self.path).write_map(index, saliency)

    def read_map(self, index: int) -> np.ndarray | None:
        """The logit saliency of stimulus ``index`` (2-D), or None when none was kept."""
        return ModelFolder(self.path).read_map(index)

    def read_num_classes(self) -> int | None:
        """The width of the model's logits, as the first scored batch showed it (None before)."""
        return read_json(self.model_info, ("num_classes",))["num_classes"] if self.model_info.exists() else None

    def read_head_activation(self) -> str | None:
        """What the model's outputs were on the first scored batch ("softmax", "log_softmax" or
        None for logits: ``harmonization.alignment.output_activation``)."""
        return read_json(self.model_info).get("head_activation") if self.model_info.exists() else None

    def write_model_info(self, logits: np.ndarray) -> None:
        """The width of the model's logits and what they are, from the first scored batch."""
        write_json(self.model_info, {"num_classes": int(logits.shape[1]), "head_activation": output_activation(logits)})

    def read_batch(self, start: int, label: str, ids: Sequence[str]) -> list[dict[str, str]] | None:
        """The rows of the batch at ``start``, or None when not written or cut short; a SweepError when
        it holds other rows."""
        path = self.batch_path(start)
        if not path.exists():
            return None
        text = path.read_text(errors="replace")
        if not text.endswith("\n") or text.count("\n") < 1 + len(ids):
            return None  # a half-written file of a killed run: computed again
        rows = read_table(path, SCORE_COLUMNS)
        if [r["image_id"] for r in rows] != list(ids) or any(r["model"] != label for r in rows):
            raise SweepError(
                lambda name: (
                    f"{path}: holds rows that are not model {label!r} on "
                    f"stimuli {ids[0]} .. {ids[-1]}; remove it, or start the "
                    f"model over ({name('fresh')})"
                )
            )
        return rows

    def write_batch(
        self, start: int, label: str, ids: Sequence[str], labels: Sequence[int], result: HumanAlignment
    ) -> None:
        rows = [
            (
                label,
                ids[i],
                int(labels[i]),
                int(result.predictions[i]),
                bool(result.correct[i]),
                bool(result.mapped[i]),
                *(float(getattr(result, key)[i]) for key in PER_IMAGE),
                int(result.forward_passes[i]),
                int(result.backward_passes[i]),
            )
            for i in range(len(result))
        ]
        write_text(self.batch_path(start), csv_text(SCORE_COLUMNS, rows))

    def read_scores(self) -> list[dict[str, str]]:
        return read_table(self.scores, SCORE_COLUMNS)

    def read_summary(self) -> dict[str, Any] | None:
        return read_json(self.summary, ("model", "human_alignment", "human")) if self.summary.exists() else None

    def finish(self, label: str, spec: str, rows: Sequence[dict[str, str]], num_classes: int) -> dict[str, Any]:
        """Write scores.csv and scores.json from every row; returns the summary."""
        write_text(self.scores, csv_text(SCORE_COLUMNS, [[r[c] for c in SCORE_COLUMNS] for r in rows]))
        summary = {"model": label, "spec": spec, **summarize_scores(rows, num_classes, self.read_head_activation())}
        write_json(self.summary, summary)
        return summary


def summarize_scores(
    rows: Sequence[dict[str, str]], num_classes: int, head_activation: str | None = None
) -> dict[str, Any]:
    """Per measure ``summarize`` and the alignment score (mean / human ceiling) as ``score``, and under
    ``human`` what ``harmonize evaluate`` reports (``harmonization.alignment.alignment_result``)."""
    mapped = [r for r in rows if r["mapped"] == "True"]
    per_image = {key: np.array([float(r[column]) for r in mapped]) for key, column in _PER_IMAGE_COLUMNS.items()}
    result = alignment_result(
        per_image,
        np.array([r["correct"] == "True" for r in rows]),
        num_classes,
        labels=np.array([int(r["label"]) for r in rows]),
        head_activation=head_activation,
    )
    human = {key: value for key, value in result.items() if key not in ("per_image", "spearman", "spearman_log_prob")}
    human["forward_passes"] = float(np.mean([int(r["forward_passes"]) for r in rows]))
    human["backward_passes"] = float(np.mean([int(r["backward_passes"]) for r in rows]))
    return {
        "human_alignment": {**result["spearman"], "score": result["alignment_score"]},
        "human_alignment_logprob": {**result["spearman_log_prob"], "score": result["alignment_score_log_prob"]},
        "human": human,
    }


def merge_into(folder: ModelFolder, human_rows: Sequence[dict[str, str]], human: dict[str, Any]) -> bool:
    """Put the per-image human alignment into a finished attack folder's results.csv, and its summaries
    into summary.json; returns whether anything changed (a folder already merged is left untouched)."""
    summary = folder.read_summary()
    if summary is None:
        return False
    by_id = {r["image_id"]: r for r in human_rows}
    rows = folder.read_results()
    merged = [
        {**r, **{m: by_id[r["image_id"]][m] if r["image_id"] in by_id else "" for m in HUMAN_MEASURES}} for r in rows
    ]
    extended = {**summary, **{k: human[k] for k in (*HUMAN_MEASURES, "human")}}
    if merged == rows and json.dumps(extended, sort_keys=True) == json.dumps(summary, sort_keys=True):
        return False
    folder.write_results(merged)
    folder.write_summary(extended)
    return True


def rebuild_table(store: SweepFolder) -> Path:
    """Rebuild OUT/human.csv from every model's scores.json (under the store's lock)."""
    path = store.root / "human.csv"
    with store.lock():
        rows = []
        for summary_path in sorted(store.root.glob("*/human/scores.json")):
            data = read_json(summary_path, ("model", "human_alignment", "human"))
            human, row = data["human"], {"model": data["model"], "spec": data.get("spec", "")}
            row.update({"n_images": human["count"], **{k: human.get(k, "") for k in TABLE_COLUMNS if k in human}})
            for measure in HUMAN_MEASURES:
                for stat in ("mean", "sem", "score"):
                    row[f"{measure}_{stat}"] = data[measure].get(stat, "")
            rows.append([_plain(row.get(c, "")) for c in TABLE_COLUMNS])
        write_text(path, csv_text(TABLE_COLUMNS, rows))
    return path


def _plain(value: Any) -> Any:
    return "" if isinstance(value, float) and math.isnan(value) else value
