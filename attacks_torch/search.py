"""The minimal-eps search (the paper's Algorithm 1), batched, and one entry point for every attack.

Each sample runs its own schedule of eps values to try (a generator that is sent the
:class:`~attacks_torch.attacks.schedules.Trial` of each try: fooled or not, and the final
margin); the driver gathers the samples that still have an eps to try, attacks exactly those in
one batch with their per-sample eps, and charges each sample the passes it took part in.
A sample whose interval has converged, or that the model already misclassifies, costs nothing more.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from attacks_torch.attacks._common import Model, check_batch, flat_norms, label_margins
from attacks_torch.attacks.registry import (
    ATTACK_REGISTRY,
    AttackEntry,
    attack_entry,
    resolve_attack_options,
)
from attacks_torch.attacks.schedules import (
    DEFAULT_SCHEDULE,
    SCHEDULES,
    Outcome,
    default_ladder_start,
)
from attacks_torch.search_drive import Kept, drive
from attacks_torch.search_passes import (
    CleanPass,
    chunks,
    clean_pass,
    first_gradients,
    first_order_guesses,
)
from harmonization.memory import retain_freed_memory

ATTACKS = tuple(ATTACK_REGISTRY)
SEARCH_ATTACKS = tuple(name for name, entry in ATTACK_REGISTRY.items() if entry.kind == "search")
SEARCH_SETTINGS = ("lo", "hi", "tol", "schedule", "ladder_start", "batch_size")


@dataclass
class SearchResult:
    """Per-sample outcome of an attack on a batch of N images (CPU tensors, except ``adversarial``).

    - ``eps``: the smallest fooling eps found (min-norm attacks: the L2 norm of the perturbation);
      ``inf`` where the attack did not fool, ``nan`` where the clean prediction was already wrong.
    - ``adversarial`` (N, 3, H, W), on the images' device: the attack's output at ``eps``; where
      not fooled, its output at the last eps tried; where not attacked, the clean image.
    - ``fooled``, ``attacked`` (clean prediction correct), ``clean_pred``, ``adv_pred``.
    - ``forward_passes``, ``backward_passes``: model passes each sample took part in.
    - ``eps_lower``: the lower end of the final interval (``nan`` where no search ran); it was
      tried and failed unless it equals ``lo``.
    - ``fooled_at_hi``: whether the attack at eps = ``hi`` fools, i.e. whether the reference
      schedule (which gives up on an image that its probe at ``hi`` does not fool) would have
      recorded the sample as fooled; ``None`` for the minimum-norm attacks.
    """

    eps: torch.Tensor
    adversarial: torch.Tensor
    fooled: torch.Tensor
    attacked: torch.Tensor
    clean_pred: torch.Tensor
    adv_pred: torch.Tensor
    forward_passes: torch.Tensor
    backward_passes: torch.Tensor
    eps_lower: torch.Tensor
    fooled_at_hi: torch.Tensor | None
    attack: str
    norm: str
    schedule: str | None = None

    def __len__(self) -> int:
        return len(self.eps)


def minimum_tol(hi: float, dtype: torch.dtype = torch.float32) -> float:
    """The smallest ``tol`` a search up to ``hi`` accepts: two steps of ``dtype`` (the images', in
    which the attack takes eps) at ``hi``. Eps values closer than that are the same attack, so a
    bisection asked for less could never finish."""
    return 2 * torch.finfo(dtype).eps * hi


def _check_search(
    attack: str,
    attack_options: Mapping[str, Any] | None,
    images: torch.Tensor,
    labels: torch.Tensor,
    lo: float,
    hi: float,
    tol: float | None,
    schedule: str,
    ladder_start: float | None,
) -> tuple[AttackEntry, dict[str, Any], float]:
    """Check every argument of :func:`minimal_epsilon`; return the attack's entry, its resolved
    options and the ladder's start (its default when None)."""
    entry = attack_entry(attack)
    if entry.kind != "search":
        raise ValueError(f"attack: minimal_epsilon searches {', '.join(SEARCH_ATTACKS)}, got {attack!r}")
    options = resolve_attack_options(attack, attack_options)
    if not (0 < lo < hi and math.isfinite(hi)):
        raise ValueError(f"lo, hi: expected 0 < lo < hi < inf, got lo={lo}, hi={hi}")
    ladder_start = default_ladder_start(lo, hi) if ladder_start is None else ladder_start
    check_batch(images, labels, options["bounds"])
    dtype = images.dtype
    if tol is not None and not tol > 0:
        raise ValueError(f"tol: expected > 0 or None, got {tol}")
    if tol is not None and tol < minimum_tol(hi, dtype):
        raise ValueError(
            f"tol: {tol:g} is below the resolution of {str(dtype).removeprefix('torch.')} "
            f"eps at hi={hi:g}; expected at least {minimum_tol(hi, dtype):.3g}"
        )
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule: expected one of {', '.join(SCHEDULES)}, got {schedule!r}")
    if schedule == "reference" and not lo < 1.0 < hi:
        raise ValueError(f"schedule='reference' probes eps 1, so it needs lo < 1 < hi; got lo={lo}, hi={hi}")
    if schedule != "reference" and not lo < ladder_start <= hi:
        raise ValueError(f"ladder_start: expected lo < ladder_start <= hi, got {ladder_start} for [{lo}, {hi}]")
    return entry, options, ladder_start


def minimal_epsilon(
    model: Model,
    images: torch.Tensor,
    labels: torch.Tensor,
    attack: str = "l2_pgd",
    lo: float = 0.001,
    hi: float = 10.0,
    tol: float | None = None,
    schedule: str = DEFAULT_SCHEDULE,
    ladder_start: float | None = None,
    batch_size: int | None = None,
    attack_options: Mapping[str, Any] | None = None,
) -> SearchResult:
    """Smallest eps at which PGD (``attack`` "l2_pgd" or "linf_pgd") fools each image, for a whole batch.

    Only images the model classifies correctly are attacked. Each keeps its own [lower, upper]
    interval and leaves the computation once it is narrower than ``tol``; an image that no eps
    up to ``hi`` fools gets eps = inf. ``schedule="ladder"`` climbs the rungs ``ladder_start``,
    2 ``ladder_start``, ... , ``hi`` (default: :func:`default_ladder_start`) so an image fooled at a
    small eps but not at a large one (sphere projection overshoots) is found, then bisects;
    ``"reference"`` is the reference code's schedule (probe ``hi`` and 1, then bisect); both record
    whether the attack at ``hi`` fools (``fooled_at_hi``). ``"secant"`` (default) finds the ladder's
    crossing from the attack's margins, trying only eps the ladder's bisection can try, at a third
    to a half of its passes (:func:`~attacks_torch.attacks.schedules.secant_schedule`,
    docs/search.md); its ``fooled_at_hi`` is ``None``. ``batch_size`` caps how
    many images go through the model at once; ``attack_options`` go to :func:`pgd` (steps,
    step_size, projection, rel_step_size, random_start, bounds; see :func:`resolve_attack_options`). Deterministic unless
    ``random_start``: the same image gets the same eps alone or in any batch.

    Cost per attacked image: one forward pass for the clean prediction, one forward and backward
    pass for PGD's first-step gradient (taken at the clean image, so shared by every eps tried),
    then per eps tried ``steps - 1`` forward and backward passes and one forward pass to check the
    result. A misclassified image costs its clean forward pass only.
    """
    entry, options, ladder_start = _check_search(
        attack, attack_options, images, labels, lo, hi, tol, schedule, ladder_start
    )
    retain_freed_memory()  # again: TensorFlow may have reset it since the import
    n = images.shape[0]
    clean = clean_pass(model, images, labels, batch_size)
    clean_margins = label_margins(clean.logits, clean.labels).double()
    rows = clean.rows
    gradients, guesses = None, torch.full((n,), math.inf, dtype=torch.float64)
    if not options["random_start"]:  # the first step's gradient is the same at every eps
        gradients = first_gradients(clean.counter, images, labels, rows, batch_size)
        guesses = first_order_guesses(clean.logits, clean.labels, gradients, entry.norm)

    def attack_at(index: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        on_device = index.to(images.device)
        return entry.function(
            clean.counter.restrict(index),
            images[on_device],
            labels[on_device],
            eps.to(images.dtype),
            norm=entry.norm,
            first_gradient=None if gradients is None else gradients[on_device],
            **options,
        )

    start = SCHEDULES[schedule].start
    schedules = {i: start(lo, hi, tol, ladder_start, float(clean_margins[i]), float(guesses[i])) for i in rows}
    kept = Kept(images, clean.pred)
    outcomes = drive(schedules, attack_at, clean, labels, kept, batch_size)
    return _search_result(outcomes, clean, kept, attack, entry.norm, schedule)


def _search_result(
    outcomes: dict[int, Outcome], clean: CleanPass, kept: Kept, attack: str, norm: str, schedule: str
) -> SearchResult:
    """The :class:`SearchResult` of the images' outcomes (NaN eps where none ran)."""
    n = len(clean.pred)
    eps = torch.full((n,), math.nan, dtype=torch.float64)
    eps_lower = torch.full((n,), math.nan, dtype=torch.float64)
    fooled_at_hi = torch.zeros(n, dtype=torch.bool) if SCHEDULES[schedule].records_hi else None
    for i, outcome in outcomes.items():
        eps[i], eps_lower[i] = outcome.eps, outcome.lower
        if fooled_at_hi is not None:
            fooled_at_hi[i] = outcome.fooled_at_hi
    return SearchResult(
        eps=eps,
        adversarial=kept.adversarial,
        fooled=torch.isfinite(eps),
        attacked=clean.attacked,
        clean_pred=clean.pred,
        adv_pred=kept.pred,
        forward_passes=clean.counter.forward_passes,
        backward_passes=clean.counter.backward_passes,
        eps_lower=eps_lower,
        fooled_at_hi=fooled_at_hi,
        attack=attack,
        norm=norm,
        schedule=schedule,
    )


def _minimum_norm(
    model: Model,
    images: torch.Tensor,
    labels: torch.Tensor,
    attack: str,
    batch_size: int | None,
    attack_options: Mapping[str, Any] | None,
) -> SearchResult:
    entry = attack_entry(attack)
    options = resolve_attack_options(attack, attack_options)
    n = images.shape[0]
    check_batch(images, labels, options["bounds"])
    retain_freed_memory()  # again: TensorFlow may have reset it since the import
    clean = clean_pass(model, images, labels, batch_size)
    adversarial = images.detach().clone()
    adv_pred = clean.pred.clone()
    for chunk in chunks(clean.rows, batch_size):
        index = torch.tensor(chunk, dtype=torch.int64)
        on_device = index.to(images.device)
        view = clean.counter.restrict(index)
        adversarial[on_device] = entry.function(view, images[on_device], labels[on_device], **options)
        with torch.no_grad():
            adv_pred[index] = view(adversarial[on_device]).argmax(1).cpu()
    fooled = clean.attacked & (adv_pred != clean.labels)
    norms = flat_norms(adversarial - images.detach()).cpu().double()
    eps = torch.where(fooled, norms, torch.where(clean.attacked, math.inf, math.nan))
    return SearchResult(
        eps=eps,
        adversarial=adversarial,
        fooled=fooled,
        attacked=clean.attacked,
        clean_pred=clean.pred,
        adv_pred=adv_pred,
        forward_passes=clean.counter.forward_passes,
        backward_passes=clean.counter.backward_passes,
        eps_lower=torch.full((n,), math.nan, dtype=torch.float64),
        fooled_at_hi=None,
        attack=attack,
        norm=entry.norm,
    )


def find_minimal(
    model: Model,
    images: torch.Tensor,
    labels: torch.Tensor,
    attack: str,
    *,
    attack_options: Mapping[str, Any] | None = None,
    **search_settings: Any,
) -> SearchResult:
    """The smallest adversarial perturbation per image, for any attack of :data:`ATTACK_REGISTRY`.

    ``attack_options`` override the attack's defaults (:func:`resolve_attack_options`). Search
    attacks ("l2_pgd", "linf_pgd") run :func:`minimal_epsilon`, which takes every setting of
    :data:`SEARCH_SETTINGS`; minimum-norm attacks ("cw_l2", "ddn") take only ``batch_size`` and
    report eps = the L2 norm of the perturbation where it fools. Images misclassified from the
    start are not attacked in either case. Images holding NaN or infinite pixels are refused (a
    ValueError naming the first), not counted as misclassified.
    """
    entry = attack_entry(attack)
    if isinstance(images, torch.Tensor) and images.is_floating_point() and not torch.isfinite(images).all():
        bad = (~torch.isfinite(images.detach())).flatten(1).any(1).nonzero().flatten().tolist()
        raise ValueError(
            f"images: {len(bad)} image(s) hold NaN or infinite pixels (first at index {bad[0]}); "
            "such an image is neither classified nor attacked"
        )
    allowed = SEARCH_SETTINGS if entry.kind == "search" else ("batch_size",)
    for key in search_settings:
        if key not in allowed:
            raise ValueError(
                f"{key}: not a search setting of {attack} (settings: {', '.join(allowed)}; "
                f"attack options go in attack_options)"
            )
    if entry.kind == "search":
        return minimal_epsilon(model, images, labels, attack=attack, attack_options=attack_options, **search_settings)
    return _minimum_norm(model, images, labels, attack, search_settings.get("batch_size"), attack_options)
