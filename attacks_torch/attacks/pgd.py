"""Projected gradient descent, untargeted, L2 or L-inf, onto the eps-sphere (the paper's) or the
eps-ball.

One loop for both norms; what depends on the norm is three small pieces per norm (:class:`L2` and
:class:`Linf`): the step's direction from the gradient, the projection of the perturbation, and the
random start.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from attacks_torch.attacks._common import (
    Model,
    check_batch,
    flat_norms,
    input_gradient,
    per_sample,
    view_as_images,
)

PROJECTIONS = ("sphere", "ball")
_TINY = 1e-12


class L2:
    """The L2 pieces: steps along the normalised gradient, starts uniformly in the ball."""

    p = 2.0

    @staticmethod
    def direction(grad: torch.Tensor) -> torch.Tensor:
        """The unit-norm step direction."""
        return grad / view_as_images(flat_norms(grad).clamp_min(_TINY))

    @classmethod
    def project(cls, delta: torch.Tensor, eps: torch.Tensor, projection: str) -> torch.Tensor:
        """``delta`` rescaled to norm ``eps`` ("sphere") or to at most ``eps`` ("ball")."""
        factor = eps / flat_norms(delta, cls.p).clamp_min(_TINY)
        if projection == "ball":
            factor = factor.clamp_max(1.0)
        return delta * view_as_images(factor)

    @staticmethod
    def random_start(images: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """A perturbation drawn uniformly in each sample's eps-ball (torch's global generator)."""
        direction = torch.randn_like(images)
        direction = direction / view_as_images(flat_norms(direction).clamp_min(_TINY))
        dims = images[0].numel()
        draw = torch.rand(images.shape[0], dtype=images.dtype, device=images.device)
        return direction * view_as_images(eps * draw ** (1.0 / dims))


class Linf:
    """The L-inf pieces: steps along the gradient's sign, starts uniformly in the box."""

    p = float("inf")

    @staticmethod
    def direction(grad: torch.Tensor) -> torch.Tensor:
        """The sign step direction (unit L-inf norm)."""
        return grad.sign()

    @classmethod
    def project(cls, delta: torch.Tensor, eps: torch.Tensor, projection: str) -> torch.Tensor:
        """``delta`` rescaled to L-inf norm ``eps`` ("sphere") or clipped to [-eps, eps]
        ("ball")."""
        if projection == "ball":
            return torch.maximum(torch.minimum(delta, view_as_images(eps)), view_as_images(-eps))
        return delta * view_as_images(eps / flat_norms(delta, cls.p).clamp_min(_TINY))

    @staticmethod
    def random_start(images: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """A perturbation drawn uniformly in each sample's eps-box (torch's global generator)."""
        return (torch.rand_like(images) * 2 - 1) * view_as_images(eps)


NORMS: dict[str, type[L2] | type[Linf]] = {"l2": L2, "linf": Linf}
"""The norms PGD runs in, by name, each with its pieces: ``p``, ``direction``, ``project`` and
``random_start``."""


def cross_entropy_gradient(model: Model, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """d sum(cross-entropy(model(images), labels)) / d images: the direction of PGD's first step."""
    _, grad = input_gradient(model, images, lambda logits: F.cross_entropy(logits, labels, reduction="none"))
    return grad


def _check(
    norm: str,
    projection: str,
    steps: int,
    rel_step_size: float | None,
    images: torch.Tensor,
    labels: torch.Tensor,
    bounds: tuple[float, float],
    random_start: bool,
    first_gradient: torch.Tensor | None,
) -> None:
    if norm not in NORMS:
        raise ValueError(f"norm: expected one of {sorted(NORMS)}, got {norm!r}")
    if projection not in PROJECTIONS:
        raise ValueError(f"projection: expected one of {PROJECTIONS}, got {projection!r}")
    if steps < 1:
        raise ValueError(f"steps: expected >= 1, got {steps}")
    if rel_step_size is not None and not rel_step_size > 0:
        raise ValueError(f"rel_step_size: expected > 0, got {rel_step_size}")
    check_batch(images, labels, bounds)
    if first_gradient is not None and (random_start or first_gradient.shape != images.shape):
        raise ValueError(
            "first_gradient: expected the gradient at the clean images (same shape), which a random start does not use"
        )


def pgd(
    model: Model,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float | torch.Tensor,
    norm: str = "l2",
    steps: int = 3,
    step_size: float | torch.Tensor = 0.5,
    projection: str = "sphere",
    random_start: bool = False,
    bounds: tuple[float, float] = (0.0, 1.0),
    rel_step_size: float | None = None,
    first_gradient: torch.Tensor | None = None,
) -> torch.Tensor:
    """Untargeted PGD on the summed cross-entropy; returns the adversarial images (detached).

    Each step moves by ``step_size`` along the L2-normalised gradient (``norm="l2"``) or its sign
    (``"linf"``), then projects the total perturbation: ``"sphere"`` rescales it to norm exactly
    ``eps`` (the paper's protocol), ``"ball"`` into norm <= ``eps`` (foolbox, torchattacks), and
    clips the image to ``bounds``. ``eps`` and ``step_size`` are floats or per-sample (N,) tensors;
    ``rel_step_size``, when given, sets the step to ``rel_step_size * eps`` per sample instead.
    ``random_start`` draws the start uniformly in the eps-ball (torch's global generator).
    ``first_gradient``: :func:`cross_entropy_gradient` at these images, when already known (it does
    not depend on eps, so a search computes it once per image); saves the first step's passes.
    Every forward pass sees the whole batch: call it on the samples that still need attacking.
    """
    _check(norm, projection, steps, rel_step_size, images, labels, bounds, random_start, first_gradient)
    pieces = NORMS[norm]
    x0 = images.detach()
    eps = per_sample(eps, x0, "eps")
    if rel_step_size is not None:
        step_sizes = eps * rel_step_size
    else:
        step_sizes = per_sample(step_size, x0, "step_size")
    x = x0
    if random_start:
        x = (x0 + pieces.random_start(x0, eps)).clamp(*bounds)

    for i in range(steps):
        if i == 0 and first_gradient is not None:
            grad = first_gradient
        else:
            grad = cross_entropy_gradient(model, x, labels)
        x = x + view_as_images(step_sizes) * pieces.direction(grad)
        x = (x0 + pieces.project(x - x0, eps, projection)).clamp(*bounds)
    return x.detach()
