"""Input checks and tensor helpers shared by the attacks."""

from __future__ import annotations

from collections.abc import Callable

import torch

Model = Callable[[torch.Tensor], torch.Tensor]


def check_batch(images: torch.Tensor, labels: torch.Tensor, bounds: tuple[float, float]) -> None:
    """Raise a one-line ValueError unless images (N, C, H, W) float lie in bounds and labels are (N,) int."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
        raise ValueError(f"images: expected a float tensor (N, C, H, W), got {getattr(images, 'shape', type(images))}")
    if not isinstance(labels, torch.Tensor) or labels.shape != (images.shape[0],) or labels.is_floating_point():
        raise ValueError(
            f"labels: expected an integer tensor of shape ({images.shape[0]},), got {getattr(labels, 'shape', labels)}"
        )
    low, high = bounds
    if not low < high:
        raise ValueError(f"bounds: expected (low, high) with low < high, got {bounds}")
    if images.numel() and (images.min() < low or images.max() > high):
        raise ValueError(
            f"images: values span [{images.min().item():.4g}, {images.max().item():.4g}], outside bounds {bounds}"
        )


def per_sample(value: float | torch.Tensor, images: torch.Tensor, name: str) -> torch.Tensor:
    """A scalar or (N,) tensor as an (N,) tensor on the images' device and dtype; finite and >= 0."""
    n = images.shape[0]
    tensor = torch.as_tensor(value, dtype=images.dtype, device=images.device)
    if tensor.ndim == 0:
        tensor = tensor.expand(n)
    if tensor.shape != (n,):
        raise ValueError(f"{name}: expected a float or a tensor of shape ({n},), got shape {tuple(tensor.shape)}")
    if not torch.isfinite(tensor).all() or (tensor < 0).any():
        raise ValueError(f"{name}: values must be finite and >= 0")
    return tensor


def view_as_images(values: torch.Tensor) -> torch.Tensor:
    """(N,) -> (N, 1, 1, 1), to broadcast one value per sample over an image batch."""
    return values.view(-1, 1, 1, 1)


def flat_norms(tensor: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """Per-sample Lp norm of an (N, ...) tensor."""
    return torch.linalg.vector_norm(tensor.flatten(1), ord=p, dim=1)


def label_margins(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Logit of the label minus the largest other logit, per sample: negative where misclassified."""
    true = logits.gather(1, labels[:, None])[:, 0]
    others = logits.scatter(1, labels[:, None], float("-inf"))
    return true - others.max(1).values


def restrict(model: Model, index: torch.Tensor) -> Model:
    """The model as seen by the sub-batch ``index``: a pass-counting model charges only those rows."""
    narrow = getattr(model, "restrict", None)
    return narrow(index) if narrow is not None else model


def input_gradient(model: Model, x: torch.Tensor, loss_fn: Callable[[torch.Tensor], torch.Tensor]) -> tuple:
    """(logits, d sum(loss_fn(logits)) / dx) with gradients for x only."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        (grad,) = torch.autograd.grad(loss_fn(logits).sum(), x)
    return logits.detach(), grad
