"""The adversarial-alignment sweep: many models x many stimuli, resumable, sharded across processes.

Layout of an output folder OUT (every file is written to a temporary name, then renamed):

    OUT/<model slug>/<attack>/config.json          settings that fix the rows (checked on resume)
    OUT/<model slug>/<attack>/batches/000000.csv   the rows of one committed batch (by first index)
    OUT/<model slug>/<attack>/maps/000000.npy      |mean over channels of delta| of a fooled image
    OUT/<model slug>/<attack>/results.csv          every row, in stimulus order, when complete
    OUT/<model slug>/<attack>/summary.json         counts, mean and standard error, accuracy
    OUT/<model slug>/<attack>/failed.json          the error of a model that failed
    OUT/summary.csv  OUT/pairs.csv  OUT/preview.npz  shared: rebuilt or merged under a lock

Resuming: a batch whose file exists is never recomputed; a killed run started again with the same
command ends with exactly the rows of an uninterrupted run. A random-weight model is rebuilt from
``seed``; batch ``start`` reseeds torch with ``seed + start`` so a random start is reproducible.
Under ``torchrun`` (RANK/WORLD_SIZE set) batch k goes to rank k % WORLD_SIZE, every rank writes its
own batch files, and rank 0 merges (gloo on CPU, NCCL on CUDA; OUT must be on a shared file
system). Independent jobs may share OUT: each model has its own folder, and the shared files are
rebuilt under an exclusive ``fcntl`` lock. A model that fails to load or to run is recorded in
``failed.json`` and the sweep goes on.
"""
from __future__ import annotations

import contextlib
import csv
import fcntl
import gc
import hashlib
import io
import json
import math
import os
import re
import tempfile
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from attacks_torch.measures import perturbation_measures
from attacks_torch.models import LITE0_NAME, PixelModel, load_model, load_timm
from attacks_torch.search import ATTACKS, SCHEDULES, SEARCH_ATTACKS, find_minimal
from attacks_torch.stimuli import Stimuli, load_stimuli, stimulus_files
from harmonization.metrics import summarize

RESULT_COLUMNS = ("model", "image_id", "label", "clean_pred", "clean_correct", "fooled", "eps", "l2", "linf",
                  "alignment", "attack", "norm")
MEASURES = ("eps", "l2", "linf", "alignment")
SUMMARY_COLUMNS = ("model", "attack", "norm", "status", "n_images", "n_attacked", "n_fooled", "accuracy",
                   *(f"{m}_{s}" for m in MEASURES for s in ("mean", "sem")), "spec", "error")
WEIGHTS = ("pretrained", "random")
_KERAS_SUFFIXES = (".keras", ".h5")


class SweepError(ValueError):
    """Bad sweep input found before any work: a bad spec, or settings that clash with OUT."""


@dataclass(frozen=True)
class ModelSpec:
    """One model of a sweep: ``label`` names it in every table, ``spec`` says how to load it.

    Written ``[label=]spec[@checkpoint]``: spec is a timm name, ``efficientnet_lite0_imagenet``
    or a ``.keras``/``.h5`` path; ``@checkpoint`` gives a timm model local weights.
    """

    label: str
    spec: str
    checkpoint: str | None = None

    @property
    def slug(self) -> str:
        """The folder name of the model: the label with unsafe characters replaced."""
        return re.sub(r"[^A-Za-z0-9._-]+", "_", self.label).strip("._") or "model"

    @property
    def is_keras(self) -> bool:
        return self.spec.endswith(_KERAS_SUFFIXES)


def parse_model_spec(text: str) -> ModelSpec:
    """``[label=]spec[@checkpoint]`` -> ModelSpec (label defaults to the spec, a file's stem for paths)."""
    text = text.strip()
    label, sep, rest = text.partition("=")
    if not sep:
        label, rest = "", text
    spec, _, checkpoint = rest.partition("@")
    spec, label, checkpoint = spec.strip(), label.strip(), checkpoint.strip() or None
    if not spec:
        raise SweepError(f"model {text!r}: empty spec")
    if checkpoint and (spec.endswith(_KERAS_SUFFIXES) or spec == LITE0_NAME):
        raise SweepError(f"model {text!r}: '@checkpoint' is for timm models only")
    if not label:
        label = Path(spec).stem if spec.endswith(_KERAS_SUFFIXES) else spec
    return ModelSpec(label, spec, checkpoint)


def _items(argument: str) -> list[str]:
    """Lines of a text file (comments after '#' dropped) or the comma-separated items of a string."""
    if os.path.isfile(argument):
        with open(argument) as handle:
            lines = [line.split("#", 1)[0].strip() for line in handle]
        return [line for line in lines if line]
    return [item.strip() for item in argument.split(",") if item.strip()]


def parse_models(argument: str) -> list[ModelSpec]:
    """``--models``: comma-separated specs, or a text file with one spec per line."""
    specs = [parse_model_spec(item) for item in _items(argument)]
    if not specs:
        raise SweepError(f"--models {argument!r}: no model given")
    seen: dict[str, str] = {}
    for spec in specs:
        if spec.slug in seen:
            raise SweepError(f"--models: labels {seen[spec.slug]!r} and {spec.label!r} share the folder {spec.slug!r}")
        seen[spec.slug] = spec.label
    return specs


def parse_pairs(argument: str) -> list[tuple[str, str]]:
    """``--pairs``: ``control=harmonized`` items (comma-separated, or one per line of a text file,
    or a CSV file with columns ``control`` and ``harmonized``)."""
    if os.path.isfile(argument) and argument.endswith(".csv"):
        with open(argument, newline="") as handle:
            reader = csv.DictReader(handle)
            if not {"control", "harmonized"} <= set(reader.fieldnames or ()):
                raise SweepError(f"{argument}: a pairs CSV needs the columns control, harmonized")
            return [(row["control"].strip(), row["harmonized"].strip()) for row in reader]
    pairs = []
    for item in _items(argument):
        control, sep, harmonized = item.partition("=")
        if not sep or not control.strip() or not harmonized.strip():
            raise SweepError(f"--pairs: {item!r} is not CONTROL=HARMONIZED")
        pairs.append((control.strip(), harmonized.strip()))
    return pairs


@dataclass(frozen=True)
class SweepConfig:
    """The settings of a sweep. ``attack`` is any of ``search.ATTACKS``; ``lo``, ``hi``, ``tol`` and
    ``schedule`` go to the PGD search; ``weights`` is how timm names without a checkpoint are
    built ("pretrained": timm's hub weights, "random": seeded random init); ``num_classes``
    overrides a timm head's size; ``keep_maps`` perturbation maps are kept per model."""

    stimuli: str
    attack: str = "l2_pgd"
    batch_size: int = 16
    limit: int | None = None
    seed: int = 0
    schedule: str = "ladder"
    lo: float = 0.001
    hi: float = 10.0
    tol: float | None = None
    weights: str = "pretrained"
    num_classes: int | None = None
    keep_maps: int = 8
    device: str = "cpu"
    progress: bool = True

    def __post_init__(self) -> None:
        checks = [
            (self.attack in ATTACKS, f"--attack must be one of {', '.join(ATTACKS)}, got {self.attack!r}"),
            (self.schedule in SCHEDULES, f"--schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}"),
            (self.weights in WEIGHTS, f"--weights must be one of {', '.join(WEIGHTS)}, got {self.weights!r}"),
            (self.batch_size >= 1, f"--batch-size must be at least 1, got {self.batch_size}"),
            (self.limit is None or self.limit >= 1, f"--limit must be at least 1, got {self.limit}"),
            (0 < self.lo < self.hi and math.isfinite(self.hi), f"need 0 < --lo < --hi, got {self.lo}, {self.hi}"),
            (self.tol is None or self.tol > 0, f"--tol must be positive, got {self.tol}"),
            (self.num_classes is None or self.num_classes >= 2, f"--num-classes must be >= 2, got {self.num_classes}"),
            (self.keep_maps >= 0, f"--keep-maps must be >= 0, got {self.keep_maps}"),
            (self.device in ("cpu", "cuda"), f"--device must be cpu or cuda, got {self.device!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise SweepError(message)

    def attack_kwargs(self) -> dict:
        """Keyword arguments of ``find_minimal`` for this attack."""
        if self.attack in SEARCH_ATTACKS:
            return {"lo": self.lo, "hi": self.hi, "tol": self.tol, "schedule": self.schedule}
        return {}


@dataclass
class ModelOutcome:
    """What happened to one model: status "done", "cached" (complete before) or "failed"."""

    label: str
    attack: str
    status: str
    error: str | None = None
    timing: dict[str, float] = field(default_factory=dict)


# --- files -------------------------------------------------------------------------------------

@contextlib.contextmanager
def _atomic(path: Path, mode: str = "w") -> Iterator[io.IOBase]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".tmp-{path.name}-")
    try:
        with os.fdopen(fd, mode, **({"newline": ""} if "b" not in mode else {})) as handle:
            yield handle
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    with _atomic(path) as handle:
        handle.write(text)


def _write_json(path: Path, data: dict) -> None:
    write_text_atomic(path, json.dumps(data, indent=1, sort_keys=True, allow_nan=True) + "\n")


def _save_npy(path: Path, array: np.ndarray) -> None:
    with _atomic(path, "wb") as handle:
        np.save(handle, array)


@contextlib.contextmanager
def locked(out_dir: Path) -> Iterator[None]:
    """An exclusive lock on OUT's shared files, held across processes (fcntl)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _cell(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "True" if value else "False"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return str(value)


def _csv_text(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([[_cell(v) for v in row] for row in rows])
    return buffer.getvalue()


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a results or batch CSV as dicts of strings."""
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


# --- distribution ------------------------------------------------------------------------------

class Distributed:
    """Rank, world size and device of this process; collectives are no-ops in a single process."""

    def __init__(self, device: str, timeout_hours: float = 48.0):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        cuda = device.startswith("cuda")
        if cuda and not torch.cuda.is_available():
            raise SweepError("--device cuda: no CUDA device is available")
        self.device = torch.device(f"cuda:{local_rank}" if cuda else "cpu")
        if cuda:
            torch.cuda.set_device(self.device)
        self._owns_group = self.world_size > 1 and not dist.is_initialized()
        if self._owns_group:
            dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(hours=timeout_hours))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def gather(self, value):
        """Every rank's ``value`` (a picklable object), in rank order, on every rank."""
        if self.world_size == 1:
            return [value]
        values = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def close(self) -> None:
        if self._owns_group:
            dist.destroy_process_group()


# --- the sweep ---------------------------------------------------------------------------------

def load_pixel_model(spec: ModelSpec, config: SweepConfig) -> PixelModel:
    """The model of ``spec``: Keras files and the bundled lite0 through ``load_model``, timm names
    with a checkpoint, timm's pretrained weights or a seeded random init (``config.weights``)."""
    if spec.is_keras or spec.spec == LITE0_NAME:
        return load_model(spec.spec)
    torch.manual_seed(config.seed)
    return load_timm(spec.spec, pretrained=spec.checkpoint is None and config.weights == "pretrained",
                     checkpoint=spec.checkpoint, num_classes=config.num_classes)


def _fingerprint(spec: ModelSpec, config: SweepConfig, stimuli: Stimuli) -> dict:
    digest = hashlib.sha256()
    for image_id, label in zip(stimuli.ids, stimuli.labels.tolist()):
        digest.update(f"{image_id}\t{label}\n".encode())
    return {
        "spec": spec.spec, "checkpoint": spec.checkpoint, "weights": config.weights,
        "num_classes": config.num_classes, "attack": config.attack, "batch_size": config.batch_size,
        "seed": config.seed, "attack_kwargs": config.attack_kwargs(),
        "stimuli": {"files": [os.path.basename(p) for p in stimulus_files(config.stimuli)],
                    "n_images": len(stimuli), "ids_labels_sha256": digest.hexdigest()},
    }


def _check_resumable(folder: Path, fingerprint: dict) -> None:
    path = folder / "config.json"
    if not path.exists():
        return
    previous = json.loads(path.read_text())
    if previous != fingerprint:
        keys = sorted(k for k in set(previous) | set(fingerprint) if previous.get(k) != fingerprint.get(k))
        raise SweepError(f"{folder} was started with other settings ({', '.join(keys)} differ): "
                         "use the same options, another --out, or delete that folder")


def _batch_path(folder: Path, start: int) -> Path:
    return folder / "batches" / f"{start:06d}.csv"


def _run_batches(model: PixelModel, spec: ModelSpec, config: SweepConfig, stimuli: Stimuli, folder: Path,
                 starts: list[int], device: torch.device, bar: tqdm, timing: dict[str, float]) -> None:
    for start in starts:
        batch = stimuli.subset(slice(start, start + config.batch_size))
        if model.input_size is not None:
            batch = batch.resized(model.input_size)
        torch.manual_seed(config.seed + start)
        began = time.perf_counter()
        result = find_minimal(model, batch.images.to(device), batch.labels.to(device), config.attack,
                              **config.attack_kwargs())
        adversarial = result.adversarial.detach().cpu()
        timing["attack_s"] += time.perf_counter() - began
        measures = perturbation_measures(batch.images, adversarial, batch.heatmaps, result.fooled)
        fooled = result.fooled.tolist()
        for offset in range(min(len(batch), max(config.keep_maps - start, 0))):
            if fooled[offset]:
                delta = (adversarial[offset] - batch.images[offset]).mean(dim=0).abs()
                _save_npy(folder / "maps" / f"{start + offset:06d}.npy", delta.numpy().astype(np.float32))
        rows = [
            (spec.label, batch.ids[i], int(batch.labels[i]), int(result.clean_pred[i]), bool(result.attacked[i]),
             fooled[i], float(result.eps[i]), float(measures["l2"][i]), float(measures["linf"][i]),
             float(measures["alignment"][i]), config.attack, result.norm)
            for i in range(len(batch))
        ]
        write_text_atomic(_batch_path(folder, start), _csv_text(RESULT_COLUMNS, rows))
        bar.update(len(batch))


def summarize_rows(rows: Sequence[dict[str, str]]) -> dict:
    """Counts, measured accuracy and ``summarize`` (mean, sem, ...) of each measure over fooled images."""
    fooled = [r for r in rows if r["fooled"] == "True"]
    n_attacked = sum(r["clean_correct"] == "True" for r in rows)
    summary = {"n_images": len(rows), "n_attacked": n_attacked, "n_fooled": len(fooled),
               "accuracy": n_attacked / len(rows) if rows else math.nan}
    for measure in MEASURES:
        summary[measure] = summarize([float(r[measure]) for r in fooled])
    return summary


def _merge(spec: ModelSpec, config: SweepConfig, folder: Path, starts: list[int], fingerprint: dict,
           timing: dict[str, float]) -> None:
    texts = [_batch_path(folder, s).read_text() for s in starts]
    header, *_ = texts[0].split("\n", 1)
    body = "".join(t.split("\n", 1)[1] for t in texts)
    write_text_atomic(folder / "results.csv", f"{header}\n{body}")
    rows = read_rows(folder / "results.csv")
    summary = {"model": spec.label, "spec": spec.spec, "checkpoint": spec.checkpoint, "attack": config.attack,
               "norm": rows[0]["norm"], "status": "done", **summarize_rows(rows), "config": fingerprint,
               "timing": timing}
    _write_json(folder / "summary.json", summary)
    with contextlib.suppress(FileNotFoundError):
        (folder / "failed.json").unlink()


def _run_model(spec: ModelSpec, config: SweepConfig, stimuli: Stimuli, out_dir: Path, env: Distributed,
               fingerprint: dict, position: int) -> ModelOutcome:
    folder = out_dir / spec.slug / config.attack
    if (folder / "summary.json").exists():
        return ModelOutcome(spec.label, config.attack, "cached")
    began = time.perf_counter()
    if env.is_main and not (folder / "config.json").exists():
        _write_json(folder / "config.json", fingerprint)
    starts = list(range(0, len(stimuli), config.batch_size))
    mine = starts[env.rank::env.world_size]
    todo = [s for s in mine if not _batch_path(folder, s).exists()]
    timing = {"load_s": 0.0, "attack_s": 0.0}
    done_images = sum(min(config.batch_size, len(stimuli) - s) for s in mine if s not in todo)
    total_images = sum(min(config.batch_size, len(stimuli) - s) for s in mine)
    error = None
    with tqdm(total=total_images, initial=done_images, desc=spec.label, unit="img", position=position,
              leave=False, disable=not (config.progress and env.is_main)) as bar:
        model = None
        try:
            if todo:
                loading = time.perf_counter()
                model = load_pixel_model(spec, config).to(env.device)
                timing["load_s"] = time.perf_counter() - loading
                _run_batches(model, spec, config, stimuli, folder, todo, env.device, bar, timing)
        except Exception as exc:  # a failing model is recorded and the sweep goes on
            error = {"rank": env.rank, "error_type": type(exc).__name__, "message": str(exc).strip(),
                     "traceback": traceback.format_exc(limit=-8)}
        finally:
            del model
            gc.collect()
            if env.device.type == "cuda":
                torch.cuda.empty_cache()
    errors = [e for e in env.gather(error) if e is not None]
    timing["wall_s"] = time.perf_counter() - began
    if errors:
        first = errors[0]
        if env.is_main:
            _write_json(folder / "failed.json", {"model": spec.label, "spec": spec.spec, "attack": config.attack,
                                                 "status": "failed", **first})
        return ModelOutcome(spec.label, config.attack, "failed", f"{first['error_type']}: {first['message']}", timing)
    if env.is_main:
        _merge(spec, config, folder, starts, fingerprint, timing)
    return ModelOutcome(spec.label, config.attack, "done", None, timing)


def _write_preview(out_dir: Path, stimuli: Stimuli, count: int) -> None:
    path = out_dir / "preview.npz"
    if count == 0 or path.exists():
        return
    part = stimuli.subset(slice(0, count))
    with _atomic(path, "wb") as handle:
        np.savez(handle, images=part.images.numpy(), heatmaps=part.heatmaps.numpy(),
                 labels=part.labels.numpy(), ids=np.array(part.ids))


def record_pairs(out_dir: Path, pairs: Sequence[tuple[str, str]]) -> None:
    """Add control -> harmonized pairs to OUT/pairs.csv (kept unique, under the lock)."""
    if not pairs:
        return
    path = out_dir / "pairs.csv"
    with locked(out_dir):
        known = [(r["control"], r["harmonized"]) for r in read_rows(path)] if path.exists() else []
        merged = list(dict.fromkeys([*known, *pairs]))
        write_text_atomic(path, _csv_text(("control", "harmonized"), merged))


def rebuild_summary(out_dir: Path) -> Path:
    """Rebuild OUT/summary.csv from every model's summary.json and failed.json (under the lock)."""
    with locked(out_dir):
        rows = []
        for path in sorted(out_dir.glob("*/*/summary.json")) + sorted(out_dir.glob("*/*/failed.json")):
            data = json.loads(path.read_text())
            if path.name == "failed.json" and (path.parent / "summary.json").exists():
                continue
            row = {key: data.get(key, "") for key in ("model", "attack", "norm", "status", "n_images",
                                                      "n_attacked", "n_fooled", "accuracy", "spec")}
            for measure in MEASURES:
                stats = data.get(measure, {})
                row[f"{measure}_mean"], row[f"{measure}_sem"] = stats.get("mean", ""), stats.get("sem", "")
            row["error"] = f"{data['error_type']}: {data['message']}" if "error_type" in data else ""
            rows.append([row[c] for c in SUMMARY_COLUMNS])
        rows.sort(key=lambda r: (str(r[0]), str(r[1])))
        write_text_atomic(out_dir / "summary.csv", _csv_text(SUMMARY_COLUMNS, rows))
    return out_dir / "summary.csv"


def run_sweep(models: Sequence[ModelSpec], config: SweepConfig, out_dir: str | os.PathLike,
              pairs: Sequence[tuple[str, str]] = ()) -> list[ModelOutcome]:
    """Attack every model on the stimuli and write the results under ``out_dir`` (see the module doc).

    Raises SweepError (or FileNotFoundError / ValueError for the stimuli) before any attack when
    the input is bad; a model that fails is reported in its outcome and in failed.json.
    """
    out = Path(out_dir)
    env = Distributed(config.device)
    try:
        stimuli = load_stimuli(config.stimuli, limit=config.limit)
        fingerprints = {}
        for spec in models:
            fingerprints[spec.slug] = _fingerprint(spec, config, stimuli)
            _check_resumable(out / spec.slug / config.attack, fingerprints[spec.slug])
        if env.is_main:
            out.mkdir(parents=True, exist_ok=True)
            _write_preview(out, stimuli, min(config.keep_maps, len(stimuli)))
            record_pairs(out, pairs)
        outcomes = []
        with tqdm(total=len(models), desc="models", unit="model", position=0,
                  disable=not (config.progress and env.is_main)) as bar:
            for spec in models:
                outcomes.append(_run_model(spec, config, stimuli, out, env, fingerprints[spec.slug], position=1))
                if env.is_main:
                    rebuild_summary(out)
                bar.update(1)
        return outcomes
    finally:
        env.close()

