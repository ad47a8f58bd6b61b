"""Human alignment of the sweep's models, with or without their attacks (``adv-align attack`` / ``score``).

:func:`score_models` measures each model's human alignment on the stimuli (``attacks_torch.human``) into
``OUT/<slug>/human/`` (``human_store.py``), resumable batch by batch like the attacks: a folder resumes
only under an equal fingerprint, and otherwise is refused before any work, naming what changed
(``fresh=True`` starts it over). A finished attack folder of the model, written before or after, gets
the per-image measures in its results.csv and their summaries in its summary.json, so a sweep folder of
an older version is extended rather than attacked again. :func:`attack_and_score` is the sweep with
human alignment. Under ``torchrun`` batch k goes to rank k % WORLD_SIZE and rank 0 merges.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from attacks_torch.human import human_alignment
from attacks_torch.models import load_model
from attacks_torch.stimuli import Stimuli, load_stimuli
from attacks_torch.sweep.config import SweepConfig
from attacks_torch.sweep.distributed import Distributed
from attacks_torch.sweep.fingerprint import fingerprint, stimuli_digest
from attacks_torch.sweep.human_store import HumanFolder, human_fingerprint, merge_into, rebuild_table
from attacks_torch.sweep.resume import must_start_over
from attacks_torch.sweep.runner import ModelOutcome, _error_record, run_sweep
from attacks_torch.sweep.specs import ModelSpec
from attacks_torch.sweep.store import SweepFolder, read_all_batches
from harmonization.clickme2.denominator import Denominator
from harmonization.files import OutputError

ATTACK = "human"
"""The ``attack`` of the outcomes of :func:`score_models`."""


def _fingerprints(
    models: Sequence[ModelSpec], config: SweepConfig, store: SweepFolder, stimuli: Stimuli, fresh: bool
) -> tuple[dict[str, dict[str, Any] | Exception], list[str]]:
    """Each model's fingerprint (or the error of a missing model file) and the folders to start over;
    refuses, writing nothing, a folder started with other settings unless ``fresh``."""
    digest = stimuli_digest(stimuli)
    prints: dict[str, dict[str, Any] | Exception] = {}
    for spec in models:
        try:
            prints[spec.slug] = human_fingerprint(spec, config, digest)
        except (OSError, ValueError) as error:
            prints[spec.slug] = error
    restart = [
        slug
        for slug, fp in prints.items()
        if not isinstance(fp, Exception) and must_start_over(HumanFolder(store.root, slug), fp, fresh)
    ]
    return prints, restart


def _prepare(
    models: Sequence[ModelSpec],
    config: SweepConfig,
    store: SweepFolder,
    stimuli: Stimuli,
    fresh: bool,
    env: Distributed,
) -> dict[str, dict[str, Any] | Exception]:
    """:func:`_fingerprints`, then (rank 0) the folders to start over emptied and every config written."""
    prints, restart = _fingerprints(models, config, store, stimuli, fresh)
    env.gather(None)
    if env.is_main:
        for slug in restart:
            HumanFolder(store.root, slug).remove()
        for slug, fp in prints.items():
            if not isinstance(fp, Exception):
                HumanFolder(store.root, slug).write_config(fp)
    env.gather(None)
    return prints


def _score_batches(
    spec: ModelSpec, config: SweepConfig, stimuli: Stimuli, folder: HumanFolder, env: Distributed
) -> bool:
    """Computes this rank's missing batches; returns whether there were any."""
    starts = list(range(0, len(stimuli), config.batch_size))[env.rank :: env.world_size]
    todo = [s for s in starts if folder.read_batch(s, spec.label, stimuli.ids[s : s + config.batch_size]) is None]
    if not todo:
        return False
    model = load_model(spec.spec, **spec.load_arguments(config.weights, config.num_classes, config.seed))
    model = model.to(env.device)
    try:
        for start in todo:
            batch = stimuli.subset(slice(start, start + config.batch_size))
            result = human_alignment(model, batch.images, batch.heatmaps, batch.labels)
            if start == todo[0]:
                folder.write_model_info(np.asarray(result.logits))
            for offset in range(min(len(batch), max(config.keep_maps - start, 0))):
                folder.write_map(start + offset, result.logit_maps[offset])
            folder.write_batch(start, spec.label, batch.ids, batch.labels.tolist(), result)
    finally:
        del model
        gc.collect()
        if env.device.type == "cuda":
            torch.cuda.empty_cache()
    return True


def _score_model(
    spec: ModelSpec, config: SweepConfig, stimuli: Stimuli, store: SweepFolder, env: Distributed
) -> ModelOutcome:
    folder = HumanFolder(store.root, spec.slug)
    began, error, computed = time.perf_counter(), None, False
    if folder.read_summary() is None:
        try:
            computed = _score_batches(spec, config, stimuli, folder, env)
        except OutputError:
            raise
        except Exception as exc:  # a failing model is reported and the others go on
            error = _error_record(env, exc)
    errors = [e for e in env.gather(error) if e is not None]
    computed = any(env.gather(computed))
    timing = {"wall_s": time.perf_counter() - began}
    if errors:
        first = errors[0]
        return ModelOutcome(spec.label, ATTACK, "failed", f"{first['error_type']}: {first['message']}", timing)
    if env.is_main:
        summary = folder.read_summary()
        if summary is None:
            rows = read_all_batches(folder, spec.label, stimuli.ids, config.batch_size)
            summary = folder.finish(spec.label, spec.spec, rows, folder.read_num_classes())
        rows = folder.read_scores()
        for attack_folder in store.model_folders():
            if attack_folder.path.parent.name == spec.slug and merge_into(attack_folder, rows, summary):
                store.rebuild_summary()
    return ModelOutcome(spec.label, ATTACK, "done" if computed else "cached", None, timing)


def score_models(
    models: Sequence[ModelSpec], config: SweepConfig, out_dir: str | os.PathLike, fresh: bool = False
) -> list[ModelOutcome]:
    """Measure every model's human alignment on the stimuli into ``out_dir`` (see the module doc)."""
    store = SweepFolder(out_dir)
    store.prepare()
    env = Distributed(config.device)
    try:
        stimuli = load_stimuli(config.stimuli, limit=config.limit)
        prints = _prepare(models, config, store, stimuli, fresh, env)
        outcomes = []
        for spec in models:
            fp = prints[spec.slug]
            if isinstance(fp, Exception):
                outcomes.append(ModelOutcome(spec.label, ATTACK, "failed", f"{type(fp).__name__}: {fp}"))
            else:
                outcomes.append(_score_model(spec, config, stimuli, store, env))
        if env.is_main:
            rebuild_table(store)
        return outcomes
    finally:
        env.close()


def attack_and_score(
    models: Sequence[ModelSpec],
    config: SweepConfig,
    out_dir: str | os.PathLike,
    pairs: Sequence[tuple[str, str]] = (),
    fresh: bool = False,
    human: bool = True,
    denominator: Denominator | None = None,
) -> list[ModelOutcome]:
    """``run_sweep``, then (``human``) :func:`score_models` on the models whose attack finished, whose
    per-image measures go into the attack's results.csv and summary. Both folders' fingerprints are
    checked before any attack. Outcomes: the attacks', then the failed human measurements.
    ``denominator``: as for ``run_sweep``."""
    if not human:
        return run_sweep(models, config, out_dir, pairs, fresh, denominator=denominator)
    store = SweepFolder(out_dir)
    env = Distributed(config.device)  # one process group for both parts (run_sweep then joins it)
    try:
        stimuli = load_stimuli(config.stimuli, limit=config.limit)
        if store.root.is_dir():  # refuse a folder of other settings before any attack, writing nothing
            digest = stimuli_digest(stimuli)
            for spec in models:
                try:
                    current = fingerprint(spec, config, digest)
                except (OSError, ValueError):  # a missing model file: that model fails in run_sweep
                    continue
                must_start_over(store.model(spec.slug, config.attack), current, fresh)
            _fingerprints(models, config, store, stimuli, fresh)
        outcomes = run_sweep(models, config, out_dir, pairs, fresh, denominator=denominator)
        finished = [spec for spec, outcome in zip(models, outcomes) if outcome.status != "failed"]
        scored = score_models(finished, config, out_dir, fresh=fresh) if finished else []
    finally:
        env.close()
    return outcomes + [o for o in scored if o.status == "failed"]
