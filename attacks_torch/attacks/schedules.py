"""The eps schedules of the minimal-eps search: which eps to attack next, given what the tries so far gave.

A schedule is a generator per image: it yields an eps, is sent the :class:`Trial` of the attack at
that eps (fooled or not, and the final margin: logit of the true class minus the largest other),
and returns an :class:`Outcome`. It sees only its own image's trials, so an image's eps never
depends on the other images of its batch. docs/search.md compares the schedules and their cost.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from dataclasses import dataclass

DEFAULT_SCHEDULE = "secant"
"""The search's default everywhere: library, sweeps and the CLI (docs/search.md)."""
# secant: the first try goes this far past the first-order estimate (which tends to fall short)
_FIRST_FACTOR = 1.1
# secant: after a failed try, the next aims this far (relative) past the estimated crossing, so
# that it fools and brackets it, but at most _MAX_JUMP times the failed try's eps
_OVERSHOOT = 0.05
_MAX_JUMP = 3.0


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


def _bisection_depth(lower: float, upper: float, tol: float | None) -> int:
    """How many halvings :func:`ladder_schedule` makes of (lower, upper] when ``upper`` is its fooling rung."""
    tol = 0.01 * upper if tol is None else tol
    depth = 0
    while upper - lower >= tol:
        upper, depth = lower + (upper - lower) / 2, depth + 1
    return depth


class LadderGrid:
    """Every eps the ladder's bisection can try: for each rung interval k, (ends[k], ends[k + 1]]
    (ends: ``lo`` and the rungs), the points i / 2^depth of the way, i = 0 .. 2^depth, computed with
    the bisection's own arithmetic, so that they are the very floats the ladder attacks."""

    def __init__(self, lo: float, hi: float, tol: float | None, start: float) -> None:
        self.rungs = ladder_rungs(hi, start)
        self.ends = [lo, *self.rungs]
        self.depths = [_bisection_depth(lower, upper, tol) for lower, upper in zip(self.ends, self.rungs)]
        self._points: dict[tuple[int, int], float] = {}

    def point(self, k: int, i: int) -> float:
        """Point i of interval k: the midpoint of its two neighbours one level coarser, as the bisection takes it."""
        if i in (0, 2 ** self.depths[k]):
            return self.ends[k + (i > 0)]
        if (k, i) not in self._points:
            odd, shift = i, 0
            while odd % 2 == 0:
                odd, shift = odd // 2, shift + 1
            left, right = self.point(k, (odd - 1) << shift), self.point(k, (odd + 1) << shift)
            self._points[k, i] = left + (right - left) / 2
        return self._points[k, i]

    def interval(self, eps: float, above: bool = False) -> int:
        """The k with ends[k] < eps <= ends[k + 1] (``above``: ends[k] <= eps < ends[k + 1]), clipped
        to the intervals."""
        for k in range(len(self.rungs)):
            end = self.ends[k + 1]
            if eps < end * (1 - 1e-12) or (not above and eps <= end * (1 + 1e-12)):
                return k
        return len(self.rungs) - 1

    def position(self, k: int, eps: float) -> float:
        """Where ``eps`` lies in interval k, in points (0 at its lower end, 2^depth at its rung)."""
        return (eps - self.ends[k]) / (self.ends[k + 1] - self.ends[k]) * 2 ** self.depths[k]

    def nearest(self, eps: float, lower: float, upper: float) -> float | None:
        """The point of ``eps``'s interval nearest ``eps`` strictly inside (lower, upper); None if there is none."""
        k = self.interval(eps)
        n = 2 ** self.depths[k]
        first = min(max(math.floor(self.position(k, lower)), 0), n)  # then a step or two to the exact first
        while first < n and self.point(k, first) <= lower:
            first += 1
        while first > 0 and self.point(k, first - 1) > lower:
            first -= 1
        last = min(max(math.ceil(self.position(k, upper)), 0), n)
        while last > 0 and self.point(k, last) >= upper:
            last -= 1
        while last < n and self.point(k, last + 1) < upper:
            last += 1
        if not (first <= last and lower < self.point(k, first) and self.point(k, last) < upper):
            return None
        return self.point(k, min(max(round(self.position(k, eps)), first), last))


def secant_schedule(
    lo: float, hi: float, tol: float | None, start: float, clean_margin: float, first_guess: float = math.inf
) -> Schedule:
    """Bracket the margin's zero crossing from estimates, then close the bracket by regula falsi,
    trying only the eps the ladder's bisection can try (:class:`LadderGrid`).

    The margin is continuous in eps where success is not, so the tries so far say where it
    crosses 0. Climb: the first try goes to 1.1 ``first_guess`` (an eps at which the linearised
    margin reaches 0, see ``search``), or to ``start`` without one; after a failed try, the next
    goes 5 % past where the line through the last two failed tries (the clean image standing for
    ``lo``) crosses 0, but at most 3 times the failed try's eps (after a jump that did not halve
    the margin, or where that line does not fall: 3 times); failing at the last rung (``hi``)
    gives up (eps inf). Bracket: between the last failed and the first fooling try, each try goes
    where the line through the two latest tries (or, outside the bracket, through its ends, the
    end kept twice in a row weighted by 1/2: Illinois) crosses 0; an estimate in the point
    interval next to an end tries the point next to that end, which closes the bracket when the
    estimate is right. Every try is the grid point nearest its estimate, so the schedule ends, as
    the ladder does, on two neighbouring points of one rung interval (the lower failed, the upper
    fooled), narrower than ``tol`` (``None``: 1 % of the rung), and where success is monotone
    on the same two points as the ladder. ``fooled_at_hi`` is ``None`` unless ``hi`` was tried.
    """
    grid = LadderGrid(lo, hi, tol, start)
    rungs = grid.rungs
    failed = [(lo, clean_margin)]
    k, may_jump = 0, True
    while True:
        target = rungs[k]
        if len(failed) == 1:
            jump = first_guess * _FIRST_FACTOR
        else:
            estimate = _line_root(failed[-2], failed[-1]) * (1 + _OVERSHOOT) if may_jump else math.inf
            jump = min(estimate, _MAX_JUMP * failed[-1][0])
        if failed[-1][0] < jump < hi and jump > 2 * lo:
            target = grid.nearest(jump, failed[-1][0], hi) or target
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
    lower, upper = failed[-1], (target, min(trial.margin, 0.0))
    latest, weights, kept = [lower, upper], [1.0, 1.0], None
    while True:
        estimate = _line_root(*latest)
        if not lower[0] < estimate < upper[0]:
            estimate = _line_root((lower[0], lower[1] * weights[0]), (upper[0], upper[1] * weights[1]))
        if not lower[0] < estimate < upper[0]:
            estimate = lower[0] + (upper[0] - lower[0]) / 2
        k = grid.interval(lower[0], above=True)
        if k != grid.interval(upper[0]):  # a rung between: the nearest point in any interval
            eps = grid.nearest(estimate, lower[0], upper[0])
        else:
            a, b = round(grid.position(k, lower[0])), round(grid.position(k, upper[0]))
            if b - a <= 1:
                break
            at = grid.position(k, estimate)
            eps = grid.point(k, a + 1 if at < a + 1 else b - 1 if at > b - 1 else round(at))
        trial = yield eps
        point = (eps, min(trial.margin, 0.0) if trial.fooled else max(trial.margin, 0.0))
        side = 1 if trial.fooled else 0
        weights[1 - side] = 0.5 * weights[1 - side] if kept == 1 - side else 1.0
        weights[side], kept = 1.0, 1 - side
        lower, upper = (lower, point) if trial.fooled else (point, upper)
        latest = [latest[-1], point]
    return Outcome(upper[0], lower[0], True if upper[0] == hi else None)


@dataclass(frozen=True)
class ScheduleEntry:
    """One schedule of the search: ``start(lo, hi, tol, ladder_start, clean_margin, first_guess)``
    makes an image's generator; ``records_hi``: whether its outcomes say if the attack at ``hi``
    fools (the ladder and the reference code always try ``hi``; the secant only when it gets
    there)."""

    start: Callable[[float, float, float | None, float, float, float], Schedule]
    records_hi: bool


SCHEDULES: dict[str, ScheduleEntry] = {
    "secant": ScheduleEntry(secant_schedule, records_hi=False),
    "ladder": ScheduleEntry(
        lambda lo, hi, tol, start, _margin, _guess: ladder_schedule(lo, hi, tol, start),
        records_hi=True,
    ),
    "reference": ScheduleEntry(
        lambda lo, hi, tol, _start, _margin, _guess: reference_schedule(lo, hi, tol),
        records_hi=True,
    ),
}
"""The search's schedules by name (the ``schedule`` setting), the default first."""
