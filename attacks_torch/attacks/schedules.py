"""The eps schedules of the minimal-eps search: which eps to attack next, given what the tries so far gave.

A schedule is a generator per image: it yields an eps, is sent the :class:`Trial` of the attack at
that eps (fooled or not, and the final margin: logit of the true class minus the largest other),
and returns an :class:`Outcome`. It sees only its own image's trials, so an image's eps never
depends on the other images of its batch. docs/search.md compares the schedules and their cost.
"""
from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass

SCHEDULES = ("secant", "ladder", "reference")
# secant: a jump aims this far (relative) past the estimated crossing, so that it fools and brackets it
_OVERSHOOT = 0.05
# secant: the first try goes this far past the first-order estimate (which tends to fall short)
_FIRST_FACTOR = 1.15
# secant: an estimate this close to an end of the bracket (in tolerances) sends the try 0.9 tol
# inside from that end, which closes the bracket when the estimate is right
_CLOSING_ZONE = 0.7
# secant: probes snap to a grid of about tol / _GRID (a power of two), so rounding noise in the
# margins does not move them: the same image gets the same eps alone and in any batch
_GRID = 16


@dataclass(frozen=True)
class Trial:
    """The attack at one eps: did it fool, and its final margin (< 0 where it fooled)."""

    fooled: bool
    margin: float


@dataclass(frozen=True)
class Outcome:
    """What one sample's schedule concluded: smallest fooling eps (inf if none), the lower end of
    its final bracket, and whether the attack at ``hi`` fools (``None`` where it was not tried)."""

    eps: float
    lower: float
    fooled_at_hi: bool | None


Schedule = Generator[float, Trial, Outcome]


def _bisect(lower: float, upper: float, tol: float) -> Generator[float, Trial, tuple[float, float]]:
    while upper - lower >= tol:
        middle = lower + (upper - lower) / 2
        if (yield middle).fooled:
            upper = middle
        else:
            lower = middle
    return lower, upper


def ladder_rungs(hi: float, start: float) -> list[float]:
    """start, 2 start, 4 start, ... below hi, then hi."""
    rungs = []
    rung = start
    while rung < hi * (1 - 1e-9):
        rungs.append(rung)
        rung *= 2
    return [*rungs, hi]


def default_ladder_start(lo: float, hi: float) -> float:
    """hi / 64, or hi / 2^k for the largest k < 6 that keeps it above lo."""
    halvings = min(6, math.ceil(math.log2(hi / lo)) - 1)
    return hi / 2**halvings


def ladder_schedule(lo: float, hi: float, tol: float | None, start: float) -> Schedule:
    """Climb the rungs until one fools, probe ``hi`` once if the ladder stopped below it, then bisect
    between the last rung that failed (or ``lo``) and the first that fooled. ``tol=None``: stop when
    the interval is narrower than 1 % of the fooling rung."""
    lower = lo
    for rung in ladder_rungs(hi, start):
        if (yield rung).fooled:
            break
        lower = rung
    else:
        return Outcome(math.inf, hi, False)
    fooled_at_hi = True if rung == hi else (yield hi).fooled
    lower, upper = yield from _bisect(lower, rung, 0.01 * rung if tol is None else tol)
    return Outcome(upper, lower, fooled_at_hi)


def reference_schedule(lo: float, hi: float, tol: float | None) -> Schedule:
    """The reference code's: give up unless ``hi`` fools; then probe eps 1 and bisect [lo, 1]
    (``tol`` 0.01 by default) if it fools, else [1, hi] (``tol`` 0.1 by default).

    Not copied from it: its bisection attacked every midpoint with the probe's eps (1) instead of
    the midpoint; here each midpoint is attacked at its own eps.
    """
    if not (yield hi).fooled:
        return Outcome(math.inf, hi, False)
    if (yield 1.0).fooled:
        lower, upper = yield from _bisect(lo, 1.0, 0.01 if tol is None else tol)
    else:
        lower, upper = yield from _bisect(1.0, hi, 0.1 if tol is None else tol)
    return Outcome(upper, lower, True)


def _line_root(p: tuple[float, float], q: tuple[float, float]) -> float:
    """Where the line through the points (eps, margin) p and q crosses margin 0; inf unless the
    margin falls as eps grows."""
    (x0, m0), (x1, m1) = sorted((p, q))
    if not (x0 < x1 and m0 > m1):
        return math.inf
    return x1 + m1 * (x1 - x0) / (m0 - m1)


def _snap(value: float, lower: float, upper: float, tol: float) -> float:
    """``value`` rounded to the grid of step 2^floor(log2(tol / _GRID)), kept strictly inside (lower, upper)."""
    step = 2.0 ** math.floor(math.log2(tol / _GRID))
    snapped = round(value / step) * step
    return min(max(snapped, lower + step), upper - step)


def _ladder_tol(tol: float | None, lower: float, rungs: list[float]) -> float:
    """``tol``, or by default the ladder's for a crossing above ``lower``: 1 % of the smallest rung
    above ``lower`` (the ladder's first fooling rung is at least that)."""
    return tol if tol is not None else 0.01 * min(r for r in rungs if r > lower * (1 + 1e-9))


def secant_schedule(lo: float, hi: float, tol: float | None, start: float, clean_margin: float,
                    first_guess: float = math.inf) -> Schedule:
    """Bracket the margin's zero crossing from estimates, then close the bracket by secant steps.

    The margin is continuous in eps where success is not, so the tries so far say where it
    crosses 0. Climb: the first try goes to 1.15 ``first_guess`` (an eps at which the linearised
    margin reaches 0, see ``search``), or to ``start`` without one; after a failed try, the next
    goes 5 % past where the line through the last two failed tries (the clean image standing for
    ``lo``) crosses 0, or, after a jump that did not halve the margin, or where that line does not
    fall, to the next rung of :func:`ladder_rungs`; failing at ``hi`` gives up (eps inf).
    Bracket: between the last failed and the first fooling try, each try goes where the line
    through the two latest tries (or, outside the bracket, through its ends) crosses 0; an
    estimate within 0.7 tol of an end sends the try 0.9 tol inside from that end, and a bracket
    that did not halve in two tries is bisected. Stops when narrower than ``tol`` (``None``: the
    ladder's, 1 % of the smallest rung above the lower end). Tries snap to a grid of
    tol / 16 so margin rounding noise does not move them. ``fooled_at_hi`` is ``None`` unless
    ``hi`` was tried.
    """
    rungs = ladder_rungs(hi, start)
    failed = [(lo, clean_margin)]
    k, may_jump = 0, True
    while True:
        target = rungs[k]
        if len(failed) == 1:
            jump = first_guess * _FIRST_FACTOR
        else:
            jump = _line_root(failed[-2], failed[-1]) * (1 + _OVERSHOOT) if may_jump else math.inf
        if failed[-1][0] < jump < hi and jump > 2 * lo:
            target = _snap(jump, failed[-1][0], hi, _ladder_tol(tol, failed[-1][0], rungs))
        trial = yield target
        if trial.fooled:
            break
        jumped = target not in rungs
        may_jump = len(failed) == 1 or not jumped or trial.margin < 0.5 * failed[-1][1]
        failed.append((target, trial.margin))
        while k < len(rungs) and rungs[k] <= target:
            k += 1
        if k == len(rungs):
            return Outcome(math.inf, hi, False)
    fooled_at_hi = True if target == hi else None
    lower, upper = failed[-1], (target, min(trial.margin, 0.0))
    latest = [failed[-1], upper]
    widths = [upper[0] - lower[0]]
    while upper[0] - lower[0] >= _ladder_tol(tol, lower[0], rungs):
        width = _ladder_tol(tol, lower[0], rungs)
        estimate = _line_root(*latest)
        if not lower[0] < estimate < upper[0]:
            estimate = _line_root(lower, upper)
        if estimate > upper[0] - width * _CLOSING_ZONE:
            estimate = upper[0] - 0.9 * width
        elif estimate < lower[0] + width * _CLOSING_ZONE:
            estimate = lower[0] + 0.9 * width
        elif len(widths) >= 3 and widths[-1] > widths[-3] / 2:
            estimate = (lower[0] + upper[0]) / 2
        eps = _snap(estimate, lower[0], upper[0], width)
        trial = yield eps
        point = (eps, min(trial.margin, 0.0) if trial.fooled else max(trial.margin, 0.0))
        if trial.fooled:
            upper = point
        else:
            lower = point
        latest = [latest[-1], point]
        widths.append(upper[0] - lower[0])
    return Outcome(upper[0], lower[0], fooled_at_hi)
