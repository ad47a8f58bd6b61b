"""Driving the per-image eps schedules of a search through shared batches, and the attack output
kept for each image."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from attacks_torch.attacks._common import label_margins
from attacks_torch.attacks.schedules import Outcome, Schedule, Trial
from attacks_torch.search_passes import CleanPass, chunks


class Kept:
    """Per image, the attack's output kept for the result: at the smallest fooling eps so far,
    else at the latest eps tried (the clean image and prediction until an eps is tried)."""

    def __init__(self, images: torch.Tensor, clean_pred: torch.Tensor) -> None:
        self.adversarial = images.detach().clone()
        self.pred = clean_pred.clone()
        self.smallest_fooling = torch.full((len(images),), math.inf, dtype=torch.float64)

    def update(
        self, index: torch.Tensor, eps: torch.Tensor, x_adv: torch.Tensor, pred: torch.Tensor, fooled: torch.Tensor
    ) -> None:
        """Take the tries at ``eps`` of the samples ``index`` (CPU) that beat what is kept."""
        smallest = self.smallest_fooling[index]
        keep = (fooled & (eps < smallest)) | (~fooled & torch.isinf(smallest))
        on_device = keep.to(x_adv.device)
        self.adversarial[index.to(x_adv.device)[on_device]] = x_adv[on_device]
        self.pred[index[keep]] = pred[keep]
        self.smallest_fooling[index[fooled]] = torch.minimum(self.smallest_fooling[index[fooled]], eps[fooled])


Attack = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(rows on CPU, their eps) -> the attack's output on those rows' images."""


def drive(
    schedules: dict[int, Schedule],
    attack_at: Attack,
    clean: CleanPass,
    labels: torch.Tensor,
    kept: Kept,
    batch_size: int | None,
) -> dict[int, Outcome]:
    """Run every image's schedule to its end: each round attacks the images that still have an eps
    to try, in batches of at most ``batch_size``, each at its own eps (``attack_at``), keeps what
    beats the kept output, and sends each schedule its :class:`Trial`. Returns the outcomes."""
    pending = {i: next(s) for i, s in schedules.items()}
    outcomes: dict[int, Outcome] = {}
    while pending:
        for chunk in chunks(sorted(pending), batch_size):
            index = torch.tensor(chunk, dtype=torch.int64)
            eps = torch.tensor([pending[i] for i in chunk], dtype=torch.float64)
            x_adv = attack_at(index, eps)
            on_device = index.to(x_adv.device)
            with torch.no_grad():
                logits = clean.counter.restrict(index)(x_adv)
            pred = logits.argmax(1).cpu()
            margins = label_margins(logits, labels[on_device]).tolist()
            fooled = pred != clean.labels[index]
            kept.update(index, eps, x_adv, pred, fooled)
            for i, was_fooled, margin in zip(chunk, fooled.tolist(), margins):
                try:
                    pending[i] = schedules[i].send(Trial(was_fooled, margin))
                except StopIteration as stop:
                    outcomes[i] = stop.value
                    del pending[i]
    return outcomes
