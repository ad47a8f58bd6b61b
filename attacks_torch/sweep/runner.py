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
import os
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from attacks_torch.stimuli import Stimuli, load_stimuli
from attacks_torch.sweep.batches import head_width, run_batches
from attacks_torch.sweep.config import SweepConfig
from attacks_torch.sweep.distributed import Distributed
from attacks_torch.sweep.fingerprint import stimuli_digest
from attacks_torch.sweep.resume import fingerprints, load_checked, must_start_over
from attacks_torch.sweep.specs import ModelSpec
from attacks_torch.sweep.store import ModelFolder, SweepFolder
from attacks_torch.sweep.summary import merge, over_ceiling
from harmonization.clickme2.denominator import Denominator
from harmonization.console import interactive
from harmonization.files import OutputError


@dataclass
class ModelOutcome:
    """What happened to one model: status "done", "cached" (complete before) or "failed"."""

    label: str
    attack: str
    status: str
    error: str | None = None
    timing: dict[str, float] = field(default_factory=dict)


def _error_record(env: Distributed, exc: Exception) -> dict[str, Any]:
    return {
        "rank": env.rank,
        "error_type": type(exc).__name__,
        "message": " ".join(str(exc).split()),
        "traceback": "".join(traceback.format_exception(exc, limit=-8)),
    }


def _run_model(
    spec: ModelSpec,
    config: SweepConfig,
    stimuli: Stimuli,
    folder: ModelFolder,
    env: Distributed,
    fp: dict[str, Any],
    denominator: Denominator | None = None,
) -> ModelOutcome:
    summary = folder.read_summary()
    if summary is not None:
        if denominator is not None and env.is_main and summary.get("denominator") != denominator.describe():
            folder.write_summary({**summary, **over_ceiling(folder.read_results(), denominator)})
        return ModelOutcome(spec.label, config.attack, "cached")
    began = time.perf_counter()
    starts = list(range(0, len(stimuli), config.batch_size))
    mine = starts[env.rank :: env.world_size]
    todo = [s for s in mine if folder.read_batch(s, spec.label, stimuli.ids[s : s + config.batch_size]) is None]
    timing = {"load_s": 0.0, "attack_s": 0.0}
    sizes = {s: min(config.batch_size, len(stimuli) - s) for s in mine}
    error = None
    with tqdm(
        total=sum(sizes.values()),
        initial=sum(sizes[s] for s in mine if s not in todo),
        desc=spec.label,
        unit="img",
        position=1,
        leave=False,
        disable=not (config.progress and env.is_main and interactive()),
    ) as bar:
        model = None
        try:
            if todo or not folder.model_info.exists():  # model.json also after a run killed before it
                loading = time.perf_counter()
                model = load_checked(spec, config, fp).to(env.device)
                timing["load_s"] = time.perf_counter() - loading
                run_batches(model, spec, config, stimuli, folder, todo, env.device, bar, timing)
                folder.write_model_info(
                    {"num_classes": head_width(model, stimuli, env.device), "data_config": model.data_config}
                )
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
            folder.write_failed(
                {"model": spec.label, "spec": spec.spec, "attack": config.attack, "status": "failed", **first}
            )
        return ModelOutcome(spec.label, config.attack, "failed", f"{first['error_type']}: {first['message']}", timing)
    if env.is_main:
        merge(spec, config, stimuli, folder, fp, timing, denominator)
    return ModelOutcome(spec.label, config.attack, "done", None, timing)


def run_sweep(
    models: Sequence[ModelSpec],
    config: SweepConfig,
    out_dir: str | os.PathLike,
    pairs: Sequence[tuple[str, str]] = (),
    fresh: bool = False,
    denominator: Denominator | None = None,
) -> list[ModelOutcome]:
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


def _sweep(
    models: Sequence[ModelSpec],
    config: SweepConfig,
    out_dir: str | os.PathLike,
    pairs: Sequence[tuple[str, str]],
    fresh: bool,
    denominator: Denominator | None,
) -> list[ModelOutcome]:
    store = SweepFolder(out_dir)
    store.prepare()
    env = Distributed(config.device)
    try:
        stimuli = load_stimuli(config.stimuli, limit=config.limit)
        digest = stimuli_digest(stimuli)
        prints = fingerprints(models, config, digest)
        restart = [
            spec.slug
            for spec in models
            if not isinstance(prints[spec.slug], Exception)
            and must_start_over(store.model(spec.slug, config.attack), prints[spec.slug], fresh)
        ]
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
                store.write_preview(
                    part.images.numpy(), part.heatmaps.numpy(), part.labels.numpy(), part.ids, digest["sha256"]
                )
            store.record_pairs(pairs)
        env.gather(None)
        outcomes = []
        bars = interactive()  # in a log: one line per model instead (harmonization.console)
        with tqdm(
            total=len(models),
            desc="models",
            unit="model",
            position=0,
            disable=not (config.progress and env.is_main and bars),
        ) as bar:
            for number, spec in enumerate(models, 1):
                folder = store.model(spec.slug, config.attack)
                fp = prints[spec.slug]
                if isinstance(fp, Exception):
                    outcome = ModelOutcome(spec.label, config.attack, "failed", f"{type(fp).__name__}: {fp}")
                    if env.is_main:
                        folder.write_failed(
                            {
                                "model": spec.label,
                                "spec": spec.spec,
                                "attack": config.attack,
                                "status": "failed",
                                **_error_record(env, fp),
                            }
                        )
                else:
                    outcome = _run_model(spec, config, stimuli, folder, env, fp, denominator)
                outcomes.append(outcome)
                if env.is_main:
                    store.rebuild_summary()
                    if config.progress and not bars:
                        wall = outcome.timing.get("wall_s")
                        print(
                            f"[{number}/{len(models)}] {outcome.label} [{outcome.attack}]: {outcome.status}"
                            + ("" if wall is None else f" ({wall:.0f} s)"),
                            file=sys.stderr,
                            flush=True,
                        )
                bar.update(1)
        return outcomes
    finally:
        env.close()
