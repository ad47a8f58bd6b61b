"""Decoupled Direction and Norm (Rony et al., 2019): a minimum-norm L2 attack."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from attacks_torch.attacks._common import Model, check_batch, flat_norms, input_gradient, view_as_images

_TINY = 1e-12


def _unit_directions(grad: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
    """L2-normalise each sample's gradient; a zero gradient is replaced by the ``fallback`` direction."""
    grad = torch.where(view_as_images(flat_norms(grad) == 0), fallback, grad)
    return grad / view_as_images(flat_norms(grad).clamp_min(_TINY))


def ddn(
    model: Model,
    images: torch.Tensor,
    labels: torch.Tensor,
    steps: int = 100,
    init_epsilon: float = 1.0,
    gamma: float = 0.05,
    max_step_size: float = 1.0,
    min_step_size: float = 0.01,
    bounds: tuple[float, float] = (0.0, 1.0),
) -> torch.Tensor:
    """Untargeted DDN; returns, per sample, the smallest-L2 adversarial seen (the clean image if none).

    Each step ascends the cross-entropy along its L2-normalised gradient with a cosine-annealed
    step (``max_step_size`` down to ``min_step_size``), shrinks the norm budget by ``1 - gamma``
    where the current point is adversarial and grows it by ``1 + gamma`` where not, rescales the
    perturbation to that norm and clips to ``bounds``. Same schedule as foolbox's ``DDNAttack``,
    plus one forward pass that also checks the last iterate (``steps`` + 1 forward passes,
    ``steps`` backward passes per sample). Where a gradient vanishes, the step goes along a
    random direction drawn once per call (torch's global generator; foolbox draws one per step).
    """
    if steps < 1:
        raise ValueError(f"steps: expected >= 1, got {steps}")
    if not 0 < gamma < 1:
        raise ValueError(f"gamma: expected 0 < gamma < 1, got {gamma}")
    check_batch(images, labels, bounds)
    low, high = bounds
    x = images.detach()
    delta = torch.zeros_like(x)
    worst_norm = flat_norms(torch.maximum(x - low, high - x))
    epsilon = torch.full_like(worst_norm, init_epsilon)
    best_norm = worst_norm.clone()
    best_delta = torch.zeros_like(x)
    fallback = torch.randn_like(x)

    def loss_fn(logits: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, labels, reduction="none")

    def keep_best(logits: torch.Tensor) -> torch.Tensor:
        nonlocal best_norm, best_delta
        adversarial = logits.argmax(1) != labels
        norms = flat_norms(delta)
        better = adversarial & (norms <= best_norm)
        best_norm = torch.where(better, norms, best_norm)
        best_delta = torch.where(view_as_images(better), delta, best_delta)
        return adversarial

    for i in range(steps):
        step = min_step_size + (max_step_size - min_step_size) * (1 + math.cos(math.pi * i / steps)) / 2
        logits, grad = input_gradient(model, x + delta, loss_fn)
        adversarial = keep_best(logits)
        delta = delta + step * _unit_directions(grad, fallback)
        epsilon = torch.minimum(epsilon * torch.where(adversarial, 1.0 - gamma, 1.0 + gamma), worst_norm)
        delta = delta * view_as_images(epsilon / flat_norms(delta).clamp_min(_TINY))
        delta = (x + delta).clamp(low, high) - x
    with torch.no_grad():
        keep_best(model(x + delta))
    return (x + best_delta).detach()
