"""The adversarial-alignment sweep: many models x many stimuli, resumable, sharded across processes.

Resuming: a batch whose file exists is never recomputed, and a killed run started again with the
same command ends with exactly the rows of an uninterrupted run. A model folder resumes only when
its fingerprint (``fingerprint.py``: the model's and the stimuli's content, the search and the
resolved attack options) equals the current one; otherwise the sweep refuses, naming what changed,
before any attack (``fresh=True`` starts such a model over), and a model file is hashed again once
loaded: one replaced in between fails that model instead of filing its rows under the old hash.
Batch ``start`` reseeds torch with ``seed + start`` so a random start is reproducible. Under
``torchrun`` (RANK / WORLD_SIZE set) batch k goes to rank k % WORLD_SIZE, every rank writes its
own batch files, and rank 0 merges
(OUT must be on a shared file system). Independent jobs may share OUT: each model has its own
folder, and the shared files are rebuilt under a lock. A model that fails to load or to run is
recorded in ``failed.json`` and the sweep goes on; a file that cannot be written (a full disk)
stops the sweep with an :class:`~harmonization.files.OutputError`, keeping every committed batch.
"""
from __future__ import annotations

import gc
import json
import math
import os
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from harmonization.console import interactive

from attacks_torch.measures import perturbation_measures
from attacks_torch.models import PixelModel, load_model, model_identity
from attacks_torch.search import find_minimal
from attacks_torch.stimuli import Stimuli, load_stimuli
from attacks_torch.sweep.config import SweepConfig
from attacks_torch.sweep.distributed import Distributed
from attacks_torch.sweep.errors import SweepError
from attacks_torch.sweep.fingerprint import differences, fingerprint, stimuli_digest
from attacks_torch.sweep.specs import ModelSpec
from attacks_torch.sweep.store import ModelFolder, SweepFolder, read_all_batches
from attacks_torch.sweep.tables import MEASURES
from harmonization.clickme2.denominator import Denominator
from harmonization.errors import Namer
from harmonization.files import OutputError
from harmonization.metrics import summarize


@dataclass
class ModelOutcome:
    """What happened to one model: status "done", "cached" (complete before) or "failed"."""

    label: str
    attack: str
    status: str
    error: str | None = None
    timing: dict[str, float] = field(default_factory=dict)


def summarize_rows(rows: Sequence[dict[str, str]]) -> dict[str, Any]:
    """Counts, measured accuracy and ``summarize`` (mean, sem, ...) of each measure over fooled images."""
    fooled = [r for r in rows if r["fooled"] == "True"]
    n_attacked = sum(r["clean_correct"] == "True" for r in rows)
    summary: dict[str, Any] = {"n_images": len(rows), "n_attacked": n_attacked, "n_fooled": len(fooled),
                               "accuracy": n_attacked / len(rows) if rows else math.nan}
    for measure in MEASURES:
        summary[measure] = summarize([float(r[measure]) for r in fooled])
    return summary


def _must_start_over(folder: ModelFolder, current: dict[str, Any], fresh: bool) -> bool:
    """Whether ``folder`` must be emptied before the run (``fresh`` and other settings); refuses
    with a SweepError naming what changed when not ``fresh``."""
    def how(name: Namer) -> str:
        return f"start that model over with {name('fresh')}, or use another {name('out_dir')}"

    try:
        previous = folder.read_config()
    except SweepError as error:
        if fresh:
            return True
        build = error.build
        raise SweepError(lambda name: f"{build(name)}; {how(name)}") from None
    if previous is None:
        if fresh or not folder.has_results():
            return fresh and folder.has_results()
        raise SweepError(lambda name: f"{folder.path}: holds results but no config.json; "
                                      f"{how(name)}")
    changes = differences(previous, current)
    if changes and not fresh:
        raise SweepError(lambda name: f"{folder.path}: cannot resume, {'; '.join(changes)}; "
                                      f"{how(name)}")
    return bool(changes)


def _check_labels(model: PixelModel, spec: ModelSpec, stimuli: Stimuli) -> None:
    """A stimulus label outside the model's classes would count as misclassified: refuse it instead."""
    top = int(stimuli.labels.max())
    if model.num_classes is not None and top >= model.num_classes:
        raise ValueError(f"stimuli: labels go up to {top}, but model {spec.label!r} has {model.num_classes} classes")


def _run_batches(model: PixelModel, spec: ModelSpec, config: SweepConfig, stimuli: Stimuli, folder: ModelFolder,
                 starts: list[int], device: torch.device, bar: tqdm, timing: dict[str, float]) -> None:
    options = config.resolved_attack_options()
    _check_labels(model, spec, stimuli)  # before any attack when the loader knows the classes
    for start in starts:
        batch = stimuli.subset(slice(start, start + config.batch_size))
        images, heatmaps = model.resize_images(batch.images), model.resize_maps(batch.heatmaps)
        torch.manual_seed(config.seed + start)
        began = time.perf_counter()
        result = find_minimal(model, images.to(device), batch.labels.to(device), config.attack,
                              attack_options=options, **config.search_settings())
        _check_labels(model, spec, stimuli)  # else once the first pass has shown the width of the logits
        adversarial = result.adversarial.detach().cpu()
        timing["attack_s"] += time.perf_counter() - began
        measures = perturbation_measures(images, adversarial, heatmaps, result.fooled)
        fooled = result.fooled.tolist()
        for offset in range(min(len(batch), max(config.keep_maps - start, 0))):
            if fooled[offset]:
                delta = (adversarial[offset] - images[offset]).mean(dim=0).abs()
                folder.write_map(start + offset, delta.numpy())
        folder.write_batch(start, [
            (spec.label, batch.ids[i], int(batch.labels[i]), int(result.clean_pred[i]), bool(result.attacked[i]),
             fooled[i], float(result.eps[i]) if fooled[i] else math.nan, float(measures["l2"][i]),
             float(measures["linf"][i]), float(measures["alignment"][i]), config.attack, result.norm)
            for i in range(len(batch))
        ])
        bar.update(len(batch))


def _over_ceiling(rows: Sequence[dict[str, str]], denominator: Denominator | None) -> dict[str, Any]:
    """The fooled images' alignment divided by the human ceiling, and which ceiling (none: {})."""
    if denominator is None:
        return {}
    fooled = [i for i, r in enumerate(rows) if r["fooled"] == "True"]
    values = denominator.divide([float(rows[i]["alignment"]) for i in fooled], fooled)
    return {"alignment_over_ceiling": summarize(values), "denominator": denominator.describe()}


def _merge(spec: ModelSpec, config: SweepConfig, stimuli: Stimuli, folder: ModelFolder, fp: dict[str, Any],
           timing: dict[str, float], denominator: Denominator | None = None) -> None:
    rows = read_all_batches(folder, spec.label, stimuli.ids, config.batch_size)
    folder.write_results(rows)
    folder.write_summary({"model": spec.label, "spec": spec.spec, "checkpoint": spec.checkpoint,
                          "attack": config.attack, "norm": config.norm, "status": "done", **summarize_rows(rows),
                          "num_classes": folder.read_model_info()["num_classes"],
                          "data_classes": int(stimuli.labels.unique().numel()), "config": fp, "timing": timing,
                          **_over_ceiling(rows, denominator)})


def _load_checked(spec: ModelSpec, config: SweepConfig, fp: dict[str, Any]) -> PixelModel:
    """The model of ``spec``, refused when what was loaded is not what the fingerprint hashed at the
    start (a model file replaced in between would file its rows under the old file's hash)."""
    arguments = spec.load_arguments(config.weights, config.num_classes, config.seed)
    model = load_model(spec.spec, **arguments)
    if json.loads(json.dumps(model_identity(spec.spec, **arguments))) != fp["model"]:
        raise ValueError(f"model {spec.label!r}: its file changed between the start of the sweep and its loading; "
                         "run the sweep again, starting that model over")
    return model


def _head_width(model: PixelModel, stimuli: Stimuli, device: torch.device) -> int:
    """The width of the model's logits: as its loader read it, else from one forward pass."""
    if model.num_classes is not None:
        return model.num_classes
    with torch.no_grad():
        return int(model(model.resize_images(stimuli.images[:1]).to(device)).shape[1])


def _error_record(env: Distributed, exc: Exception) -> dict[str, Any]:
    return {"rank": env.rank, "error_type": type(exc).__name__, "message": " ".join(str(exc).split()),
            "traceback": "".join(traceback.format_exception(exc, limit=-8))}


def _run_model(spec: ModelSpec, config: SweepConfig, stimuli: Stimuli, folder: ModelFolder, env: Distributed,
               fp: dict[str, Any], denominator: Denominator | None = None) -> ModelOutcome:
    summary = folder.read_summary()
    if summary is not None:
        if denominator is not None and env.is_main and summary.get("denominator") != denominator.describe():
            folder.write_summary({**summary, **_over_ceiling(folder.read_results(), denominator)})
        return ModelOutcome(spec.label, config.attack, "cached")
    began = time.perf_counter()
    starts = list(range(0, len(stimuli), config.batch_size))
    mine = starts[env.rank::env.world_size]
    todo = [s for s in mine if folder.read_batch(s, spec.label, stimuli.ids[s:s + config.batch_size]) is None]
    timing = {"load_s": 0.0, "attack_s": 0.0}
    sizes = {s: min(config.batch_size, len(stimuli) - s) for s in mine}
    error = None
    with tqdm(total=sum(sizes.values()), initial=sum(sizes[s] for s in mine if s not in todo), desc=spec.label,
              unit="img", position=1, leave=False,
              disable=not (config.progress and env.is_main and interactive())) as bar:
        model = None
        try:
            if todo or not folder.model_info.exists():  # model.json also after a run killed before it
                loading = time.perf_counter()
                model = _load_checked(spec, config, fp).to(env.device)
                timing["load_s"] = time.perf_counter() - loading
                _run_batches(model, spec, config, stimuli, folder, todo, env.device, bar, timing)
                folder.write_model_info({"num_classes": _head_width(model, stimuli, env.device),
                                         "data_config": model.data_config})
        except OutputError:
            raise  # not the model's fault: stop, keeping every committed batch
        except Exception as exc:  # a failing model is recorded and the sweep goes on
            error = _error_record(env, exc)
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
            folder.write_failed({"model": spec.label, "spec": spec.spec, "attack": config.attack, "status": "failed",
                                 **first})
        return ModelOutcome(spec.label, config.attack, "failed", f"{first['error_type']}: {first['message']}", timing)
    if env.is_main:
        _merge(spec, config, stimuli, folder, fp, timing, denominator)
    return ModelOutcome(spec.label, config.attack, "done", None, timing)


def _fingerprints(models: Sequence[ModelSpec], config: SweepConfig, digest: dict[str, Any],
                  ) -> dict[str, dict[str, Any] | Exception]:
    prints: dict[str, dict[str, Any] | Exception] = {}
    for spec in models:
        try:
            prints[spec.slug] = fingerprint(spec, config, digest)
        except (OSError, ValueError) as error:  # a missing or unreadable model file: that model fails
            prints[spec.slug] = error
    return prints


def run_sweep(models: Sequence[ModelSpec], config: SweepConfig, out_dir: str | os.PathLike,
              pairs: Sequence[tuple[str, str]] = (), fresh: bool = False,
              denominator: Denominator | None = None) -> list[ModelOutcome]:
    """Attack every model on the stimuli and write the results under ``out_dir`` (see ``store.py``).

    Raises SweepError (or FileNotFoundError / ValueError for the stimuli) before any attack when
    the input is bad or a model folder was started with other settings (``fresh=True``: such a
    folder is emptied and the model started over; folders with the same settings resume). A model
    that fails is reported in its outcome and in failed.json; an OutputError stops the sweep.
    ``denominator`` (a human ceiling, ``harmonization.clickme2.denominator``) adds the fooled images'
    alignment divided by it, and the ceiling used, to each model's summary.json. The numerics
    settings of ``config`` (TF32) hold for the length of the sweep.
    """
    with config.numerics():
        return _sweep(models, config, out_dir, pairs, fresh, denominator)


def _sweep(models: Sequence[ModelSpec], config: SweepConfig, out_dir: str | os.PathLike,
           pairs: Sequence[tuple[str, str]], fresh: bool, denominator: Denominator | None,
           ) -> list[ModelOutcome]:
    store = SweepFolder(out_dir)
    store.prepare()
    env = Distributed(config.device)
    try:
        stimuli = load_stimuli(config.stimuli, limit=config.limit)
        digest = stimuli_digest(stimuli)
        prints = _fingerprints(models, config, digest)
        restart = [spec.slug for spec in models if not isinstance(prints[spec.slug], Exception)
                   and _must_start_over(store.model(spec.slug, config.attack), prints[spec.slug], fresh)]
        env.gather(None)  # every rank has checked before any folder changes
        if env.is_main:
            for slug in restart:
                store.model(slug, config.attack).remove()
            for spec in models:
                if not isinstance(prints[spec.slug], Exception):
                    store.model(spec.slug, config.attack).write_config(prints[spec.slug])
            count = min(config.keep_maps, len(stimuli))
            if count:
                part = stimuli.subset(slice(0, count))
                store.write_preview(part.images.numpy(), part.heatmaps.numpy(), part.labels.numpy(), part.ids,
                                    digest["sha256"])
            store.record_pairs(pairs)
        env.gather(None)
        outcomes = []
        bars = interactive()  # in a log: one line per model instead (harmonization.console)
        with tqdm(total=len(models), desc="models", unit="model", position=0,
                  disable=not (config.progress and env.is_main and bars)) as bar:
            for number, spec in enumerate(models, 1):
                folder = store.model(spec.slug, config.attack)
                fp = prints[spec.slug]
                if isinstance(fp, Exception):
                    outcome = ModelOutcome(spec.label, config.attack, "failed", f"{type(fp).__name__}: {fp}")
                    if env.is_main:
                        folder.write_failed({"model": spec.label, "spec": spec.spec, "attack": config.attack,
                                             "status": "failed", **_error_record(env, fp)})
                else:
                    outcome = _run_model(spec, config, stimuli, folder, env, fp, denominator)
                outcomes.append(outcome)
                if env.is_main:
                    store.rebuild_summary()
                    if config.progress and not bars:
                        wall = outcome.timing.get("wall_s")
                        print(f"[{number}/{len(models)}] {outcome.label} [{outcome.attack}]: {outcome.status}"
                              + ("" if wall is None else f" ({wall:.0f} s)"), file=sys.stderr, flush=True)
                bar.update(1)
        return outcomes
    finally:
        env.close()
