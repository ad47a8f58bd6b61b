"""Carlini-Wagner L2 (2017), untargeted, with its search over the constant c."""

from __future__ import annotations

import math

import torch

from attacks_torch.attacks._common import Model, check_batch, flat_norms, label_margins, restrict


class _Adam:
    """Adam on a batch of perturbations; rows can be updated selectively (the others keep their state)."""

    def __init__(self, like: torch.Tensor, lr: float, beta1: float = 0.9, beta2: float = 0.999) -> None:
        self.lr, self.beta1, self.beta2 = lr, beta1, beta2
        self.m = torch.zeros_like(like)
        self.v = torch.zeros_like(like)

    def step(self, index: torch.Tensor, grad: torch.Tensor, t: int) -> torch.Tensor:
        """Update the moments of rows ``index`` at step ``t`` (1-based) and return their step."""
        self.m[index] = self.beta1 * self.m[index] + (1 - self.beta1) * grad
        self.v[index] = self.beta2 * self.v[index] + (1 - self.beta2) * grad**2
        m_hat = self.m[index] / (1 - self.beta1**t)
        v_hat = self.v[index] / (1 - self.beta2**t)
        return self.lr * m_hat / (v_hat.sqrt() + 1e-8)


def carlini_wagner_l2(
    model: Model,
    images: torch.Tensor,
    labels: torch.Tensor,
    binary_search_steps: int = 5,
    steps: int = 100,
    step_size: float = 0.0075,
    confidence: float = 0.0,
    initial_const: float = 0.1,
    abort_early: bool = True,
    bounds: tuple[float, float] = (0.0, 1.0),
) -> torch.Tensor:
    """Untargeted C&W L2; returns, per sample, the smallest-L2 adversarial found (the clean image if none).

    Minimises ``||x' - x||^2 + c * max(0, margin + confidence)`` in tanh space with Adam
    (``step_size``); the constant starts at ``initial_const`` (the paper's 0.1), is multiplied by
    10 while no adversarial is found and bisected once one is. Follows foolbox's
    ``L2CarliniWagnerAttack`` step for step, except that ``abort_early`` is decided per sample:
    every tenth of ``steps``, a sample whose loss fell by less than 0.01 % stops optimising for the
    current constant and is not run through the model again until the next one.
    """
    if binary_search_steps < 1 or steps < 1:
        raise ValueError(f"binary_search_steps and steps must be >= 1, got {binary_search_steps}, {steps}")
    check_batch(images, labels, bounds)
    low, high = bounds
    centre, half = (low + high) / 2, (high - low) / 2
    x = images.detach()
    n = x.shape[0]
    w0 = torch.atanh((x - centre) / half * 0.999999)
    x_rebuilt = torch.tanh(w0) * half + centre

    consts = torch.full((n,), float(initial_const), dtype=torch.float64)
    lower = torch.zeros(n, dtype=torch.float64)
    upper = torch.full((n,), math.inf, dtype=torch.float64)
    best = x.clone()
    best_norm = torch.full((n,), math.inf, dtype=x.dtype, device=x.device)
    check_every = math.ceil(steps / 10)

    for search_step in range(binary_search_steps):
        if search_step == binary_search_steps - 1 and binary_search_steps >= 10:
            consts = torch.clamp(upper, max=1e10)  # the last round repeats the best constant found
        consts_device = consts.to(device=x.device, dtype=x.dtype)
        delta = torch.zeros_like(w0)
        adam = _Adam(delta, step_size)
        found = torch.zeros(n, dtype=torch.bool, device=x.device)
        previous_loss = torch.full((n,), math.inf, dtype=x.dtype, device=x.device)
        active = torch.arange(n, device=x.device)
        for step in range(steps):
            if active.numel() == 0:
                break
            d = delta[active].requires_grad_(True)
            with torch.enable_grad():
                perturbed = torch.tanh(w0[active] + d) * half + centre
                logits = restrict(model, active)(perturbed)
                hinge = (label_margins(logits, labels[active]) + confidence).clamp_min(0) * consts_device[active]
                loss = hinge + (perturbed - x_rebuilt[active]).flatten(1).square().sum(1)
                (grad,) = torch.autograd.grad(loss.sum(), d)
            delta[active] = delta[active] - adam.step(active, grad, step + 1)
            perturbed, logits, loss = perturbed.detach(), logits.detach(), loss.detach()
            if abort_early and step % check_every == 0:
                progressing = loss <= 0.9999 * previous_loss[active]
                previous_loss[active] = loss
                active, perturbed, logits = active[progressing], perturbed[progressing], logits[progressing]
            shifted = logits.scatter_add(1, labels[active, None], torch.full_like(logits[:, :1], float(confidence)))
            adversarial = shifted.argmax(1) != labels[active]
            found[active] |= adversarial
            norms = flat_norms(perturbed - x[active])
            better = adversarial & (norms < best_norm[active])
            rows = active[better]
            best[rows] = perturbed[better]
            best_norm[rows] = norms[better]
        found_cpu = found.cpu()
        upper = torch.where(found_cpu, consts, upper)
        lower = torch.where(found_cpu, lower, consts)
        consts = torch.where(torch.isinf(upper), consts * 10, (lower + upper) / 2)
    return best
