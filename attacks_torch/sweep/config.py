"""The settings of a sweep, checked once, with the attack's options resolved against its defaults."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from attacks_torch.attacks.registry import ATTACK_REGISTRY, resolve_attack_options
from attacks_torch.models import WEIGHTS
from attacks_torch.search import DEFAULT_SCHEDULE, SCHEDULES, minimum_tol
from attacks_torch.sweep.errors import SweepError

DEVICES = ("cpu", "cuda")
MAX_SEED = 2**32 - 1
"""The largest seed (batch ``start`` reseeds torch with ``seed + start``)."""


@dataclass(frozen=True)
class SweepConfig:
    """The settings of a sweep.

    ``attack`` is a name of the attack registry and ``attack_options`` override its defaults (see
    :meth:`resolved_attack_options`); ``lo``, ``hi``, ``tol`` and ``schedule`` set the eps search
    of the "search" attacks (PGD); ``weights`` is how timm names without a checkpoint are built
    ("pretrained": timm's hub weights, "random": a random init drawn from ``seed``);
    ``num_classes`` sets the size of timm names' heads (Keras files and lite0 keep theirs);
    ``keep_maps`` perturbation maps are kept per model; ``tf32`` lets CUDA matrix products and
    convolutions round their inputs to TF32 (faster; off by default, as it made batched and
    per-image eps differ on an H200), set by :meth:`numerics` for the length of a sweep.
    Bad values raise a :class:`SweepError` naming the argument.
    """

    stimuli: str
    attack: str = "l2_pgd"
    attack_options: Mapping[str, Any] | None = field(default=None, hash=False)
    batch_size: int = 16
    limit: int | None = None
    seed: int = 0
    schedule: str = DEFAULT_SCHEDULE
    lo: float = 0.001
    hi: float = 10.0
    tol: float | None = None
    weights: str = "pretrained"
    num_classes: int | None = None
    keep_maps: int = 8
    device: str = "cpu"
    progress: bool = True
    tf32: bool = False

    def __post_init__(self) -> None:
        checks = [
            (
                self.attack in ATTACK_REGISTRY,
                "attack",
                f"must be one of {', '.join(ATTACK_REGISTRY)}, got {self.attack!r}",
            ),
            (self.schedule in SCHEDULES, "schedule", f"must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}"),
            (self.weights in WEIGHTS, "weights", f"must be one of {', '.join(WEIGHTS)}, got {self.weights!r}"),
            (self.batch_size >= 1, "batch_size", f"must be at least 1, got {self.batch_size}"),
            (self.limit is None or self.limit >= 1, "limit", f"must be at least 1, got {self.limit}"),
            (self.tol is None or 0 < self.tol < math.inf, "tol", f"must be a finite positive number, got {self.tol}"),
            (0 <= self.seed <= MAX_SEED, "seed", f"must be from 0 to {MAX_SEED}, got {self.seed}"),
            (self.num_classes is None or self.num_classes >= 2, "num_classes", f"must be >= 2, got {self.num_classes}"),
            (self.keep_maps >= 0, "keep_maps", f"must be >= 0, got {self.keep_maps}"),
            (self.device in DEVICES, "device", f"must be cpu or cuda, got {self.device!r}"),
        ]
        for ok, argument, message in checks:
            if not ok:
                raise SweepError.about(argument, f" {message}")
        if self.tol is not None and self.tol >= self.hi:
            raise SweepError(lambda name: f"{name('tol')} {self.tol:g} is not below {name('hi')} {self.hi:g}")
        if not (0 < self.lo < self.hi and math.isfinite(self.hi)):
            raise SweepError(lambda name: f"need 0 < {name('lo')} < {name('hi')}, got {self.lo}, {self.hi}")
        if self.tol is not None and self.tol < minimum_tol(self.hi):
            raise SweepError(
                lambda name: (
                    f"{name('tol')} {self.tol:g} is below the float32 "
                    f"resolution of eps at {name('hi')} {self.hi:g}; use at "
                    f"least {minimum_tol(self.hi):.3g}"
                )
            )
        self.resolved_attack_options()

    @contextmanager
    def numerics(self) -> Iterator[None]:
        """Torch's TF32 switches set as ``tf32`` says inside the block, restored after it."""
        matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
        before = matmul.allow_tf32, cudnn.allow_tf32
        matmul.allow_tf32 = cudnn.allow_tf32 = self.tf32
        try:
            yield
        finally:
            matmul.allow_tf32, cudnn.allow_tf32 = before

    @property
    def is_search(self) -> bool:
        """Whether the attack runs the minimal-eps search (so ``lo``, ``hi``, ``tol``, ``schedule`` apply)."""
        return ATTACK_REGISTRY[self.attack].kind == "search"

    @property
    def norm(self) -> str:
        return ATTACK_REGISTRY[self.attack].norm

    def resolved_attack_options(self) -> dict[str, Any]:
        """The attack's default options with ``attack_options`` merged over them: what a run uses."""
        try:
            return resolve_attack_options(self.attack, self.attack_options)
        except ValueError as error:
            # the registry's messages start with "attack_options: ..."
            raise SweepError.about("attack_options", str(error).removeprefix("attack_options")) from None

    def search_settings(self) -> dict[str, Any]:
        """Keyword arguments of ``find_minimal`` besides the attack options: the eps search's."""
        if not self.is_search:
            return {}
        return {"lo": self.lo, "hi": self.hi, "tol": self.tol, "schedule": self.schedule}
