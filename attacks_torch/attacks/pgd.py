"""Projected gradient descent, untargeted, L2 or L-inf, onto the eps-sphere (the paper's) or the eps-ball."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from attacks_torch.attacks._common import Model, check_batch, flat_norms, input_gradient, per_sample, view_as_images

NORMS = {"l2": 2.0, "linf": float("inf")}
PROJECTIONS = ("sphere", "ball")
_TINY = 1e-12


def _project(delta: torch.Tensor, eps: torch.Tensor, p: float, projection: str) -> torch.Tensor:
    if projection == "ball" and p == float("inf"):
        return torch.maximum(torch.minimum(delta, view_as_images(eps)), view_as_images(-eps))
    factor = eps / flat_norms(delta, p).clamp_min(_TINY)
    if projection == "ball":
        factor = factor.clamp_max(1.0)
    return delta * view_as_images(factor)


def _random_start(images: torch.Tensor, eps: torch.Tensor, p: float) -> torch.Tensor:
    if p == float("inf"):
        return (torch.rand_like(images) * 2 - 1) * view_as_images(eps)
    direction = torch.randn_like(images)
    direction = direction / view_as_images(flat_norms(direction).clamp_min(_TINY))
    dims = images[0].numel()
    radius = eps * torch.rand(images.shape[0], dtype=images.dtype, device=images.device) ** (1.0 / dims)
    return direction * view_as_images(radius)


def cross_entropy_gradient(model: Model, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """d sum(cross-entropy(model(images), labels)) / d images: the direction of PGD's first step."""
    _, grad = input_gradient(model, images, lambda logits: F.cross_entropy(logits, labels, reduction="none"))
    return grad


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
        raise ValueError("first_gradient: expected the gradient at the clean images (same shape), "
                         "which a random start does not use")
    p = NORMS[norm]
    x0 = images.detach()
    eps = per_sample(eps, x0, "eps")
    step_sizes = eps * rel_step_size if rel_step_size is not None else per_sample(step_size, x0, "step_size")
    x = x0
    if random_start:
        x = (x0 + _random_start(x0, eps, p)).clamp(*bounds)

    for i in range(steps):
        grad = first_gradient if i == 0 and first_gradient is not None else cross_entropy_gradient(model, x, labels)
        if p == 2.0:
            direction = grad / view_as_images(flat_norms(grad).clamp_min(_TINY))
        else:
            direction = grad.sign()
        x = x + view_as_images(step_sizes) * direction
        x = (x0 + _project(x - x0, eps, p, projection)).clamp(*bounds)
    return x.detach()
