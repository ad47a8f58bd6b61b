"""The passes a search makes before trying any eps, batched and charged to each sample: the clean
prediction, PGD's first-step gradient (the same at every eps), and from the two the first-order
guess of each image's fooling eps."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from attacks_torch.attacks import cross_entropy_gradient
from attacks_torch.attacks._common import Model, flat_norms, label_margins
from attacks_torch.models.counting import CountingModel


def chunks(rows: list[int], size: int | None) -> Iterator[list[int]]:
    """``rows`` in runs of at most ``size`` (all at once when ``size`` is None)."""
    size = size or max(len(rows), 1)
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


@dataclass(frozen=True)
class CleanPass:
    """The clean images through the model: ``counter`` charges every pass from here on to its
    samples; ``labels``, ``logits`` and ``pred`` on CPU; ``attacked``: the correctly classified
    samples, the only ones an attack sees."""

    counter: CountingModel
    labels: torch.Tensor
    logits: torch.Tensor
    pred: torch.Tensor
    attacked: torch.Tensor

    @property
    def rows(self) -> list[int]:
        """The indices of the attacked samples."""
        return torch.nonzero(self.attacked).flatten().tolist()


def clean_pass(model: Model, images: torch.Tensor, labels: torch.Tensor, batch_size: int | None) -> CleanPass:
    """Count passes from here on and predict the clean images (checked by the caller) in batches
    of at most ``batch_size``."""
    counter = CountingModel(model, images.shape[0])
    logits = []
    with torch.no_grad():
        for chunk in chunks(list(range(len(images))), batch_size):
            index = torch.tensor(chunk, dtype=torch.int64)
            logits.append(counter.restrict(index)(images[index.to(images.device)]).cpu())
    all_logits = torch.cat(logits) if logits else torch.zeros(0, 0)
    labels_cpu = labels.cpu()
    pred = all_logits.argmax(1) if len(all_logits) else torch.zeros(0, dtype=torch.int64)
    return CleanPass(counter, labels_cpu, all_logits, pred, pred == labels_cpu)


def first_gradients(
    counter: CountingModel, images: torch.Tensor, labels: torch.Tensor, rows: list[int], batch_size: int | None
) -> torch.Tensor:
    """PGD's first-step gradient (at the clean image, whatever eps) for ``rows``, computed once
    per image; zero for the other rows."""
    gradients = torch.zeros_like(images)
    for chunk in chunks(rows, batch_size):
        index = torch.tensor(chunk, dtype=torch.int64)
        on_device = index.to(images.device)
        gradients[on_device] = cross_entropy_gradient(counter.restrict(index), images[on_device], labels[on_device])
    return gradients


def first_order_guesses(logits: torch.Tensor, labels: torch.Tensor, gradients: torch.Tensor, norm: str) -> torch.Tensor:
    """Per image, the eps at which the margin, linearised at the clean image, reaches 0.

    With one competing class c, the cross-entropy gradient is -(1 - p_label) times the margin's
    gradient, so the margin falls at rate |gradient| / (1 - p_label) per unit of L2 step and
    reaches 0 at margin (1 - p_label) / |gradient| (DeepFool's linear step; for an L-inf step the
    rate is the gradient's L1 norm). inf where the gradient vanishes."""
    margins = label_margins(logits, labels).double()
    others = logits.scatter(1, labels[:, None], float("-inf")).logsumexp(1)
    rest = (others - logits.logsumexp(1)).double().exp()  # 1 - p_label, without cancellation
    # the dual norm of the step's
    norms = flat_norms(gradients, 1.0 if norm == "linf" else 2.0).cpu().double()
    return torch.where(norms > 0, margins * rest / norms, torch.full_like(norms, math.inf))
