"""The attacks the project runs, one entry each: kind, norm, the function that runs it and its options.

``kind`` "search": the function attacks at a given eps and ``find_minimal`` searches the smallest
fooling eps; "min_norm": the function returns its own smallest adversarial. An entry's ``defaults``
are its function's own keyword defaults (read from its signature, so they cannot drift), minus the
arguments the search sets itself. :func:`resolve_attack_options` merges overrides into them and
checks every value; its result is what a run used, and what a resume fingerprint should record.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from attacks_torch.attacks.cw import carlini_wagner_l2
from attacks_torch.attacks.ddn import ddn
from attacks_torch.attacks.pgd import PROJECTIONS, pgd

KINDS = ("search", "min_norm")


@dataclass(frozen=True)
class AttackEntry:
    """One attack: ``name``, ``kind`` (one of :data:`KINDS`), ``norm`` ("l2" or "linf") of its
    perturbation, the ``function`` that runs it, and its ``defaults`` (option name -> value)."""

    name: str
    kind: str
    norm: str
    function: Callable[..., Any]
    defaults: Mapping[str, Any]


def _real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _positive_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else None


def _positive(value: Any) -> float | None:
    return float(value) if _real(value) and value > 0 else None


def _non_negative(value: Any) -> float | None:
    return float(value) if _real(value) and value >= 0 else None


def _fraction(value: Any) -> float | None:
    return float(value) if _real(value) and 0 < value < 1 else None


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _projection(value: Any) -> str | None:
    return value if value in PROJECTIONS else None


def _optional_positive(value: Any) -> float | None:
    return None if value is None else _positive(value)


def _bounds(value: Any) -> tuple[float, float] | None:
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(map(_real, value)) and value[0] < value[1]:
        return float(value[0]), float(value[1])
    return None


# option name -> (check returning the normalised value or None when invalid, what a valid value is)
_CHECKS: dict[str, tuple[Callable[[Any], Any], str]] = {
    "steps": (_positive_int, "an integer >= 1"),
    "binary_search_steps": (_positive_int, "an integer >= 1"),
    "step_size": (_positive, "a number > 0"),
    "initial_const": (_positive, "a number > 0"),
    "init_epsilon": (_positive, "a number > 0"),
    "max_step_size": (_positive, "a number > 0"),
    "min_step_size": (_positive, "a number > 0"),
    "confidence": (_non_negative, "a number >= 0"),
    "gamma": (_fraction, "a number strictly between 0 and 1"),
    "projection": (_projection, f"one of {', '.join(PROJECTIONS)}"),
    "random_start": (_flag, "true or false"),
    "abort_early": (_flag, "true or false"),
    "rel_step_size": (_optional_positive, "null or a number > 0"),
    "bounds": (_bounds, "two numbers [low, high] with low < high"),
}
_NULLABLE = {"rel_step_size"}


def _keyword_defaults(function: Callable[..., Any], set_by_search: tuple[str, ...] = ()) -> Mapping[str, Any]:
    parameters = inspect.signature(function).parameters.values()
    defaults = {
        p.name: p.default
        for p in parameters
        if p.default is not inspect.Parameter.empty and p.name not in set_by_search
    }
    return MappingProxyType(defaults)


_PGD_DEFAULTS = _keyword_defaults(pgd, set_by_search=("norm", "first_gradient"))

ATTACK_REGISTRY: dict[str, AttackEntry] = {
    "l2_pgd": AttackEntry("l2_pgd", "search", "l2", pgd, _PGD_DEFAULTS),
    "linf_pgd": AttackEntry("linf_pgd", "search", "linf", pgd, _PGD_DEFAULTS),
    "cw_l2": AttackEntry("cw_l2", "min_norm", "l2", carlini_wagner_l2, _keyword_defaults(carlini_wagner_l2)),
    "ddn": AttackEntry("ddn", "min_norm", "l2", ddn, _keyword_defaults(ddn)),
}


def attack_entry(attack: str) -> AttackEntry:
    """The registry entry of ``attack``; a ValueError naming the known attacks otherwise."""
    if attack not in ATTACK_REGISTRY:
        raise ValueError(f"attack: expected one of {', '.join(ATTACK_REGISTRY)}, got {attack!r}")
    return ATTACK_REGISTRY[attack]


def resolve_attack_options(attack: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """``attack``'s defaults with ``options`` merged over them, each value checked and normalised
    (numbers as float where the option is a number, ``bounds`` as a tuple), so equal settings give
    equal dicts. A ValueError names an unknown option or a bad value and lists the known options."""
    entry = attack_entry(attack)
    known = ", ".join(entry.defaults)
    resolved = dict(entry.defaults)
    for key, value in (options or {}).items():
        if key not in entry.defaults:
            raise ValueError(f"attack_options: unknown option {key!r} for {attack}; its options are {known}")
        check, expected = _CHECKS[key]
        normalised = check(value)
        if normalised is None and not (value is None and key in _NULLABLE):
            raise ValueError(
                f"attack_options: {key} of {attack} must be {expected}, got {value!r} (options of {attack}: {known})"
            )
        resolved[key] = normalised
    return resolved
