"""Per-sample accounting of the forward and backward passes an attack actually spends."""

from __future__ import annotations

from collections.abc import Callable

import torch


class CountingModel:
    """Wraps a model and charges every pass to the rows of the batch it was called on.

    ``forward_passes[i]`` counts the model calls that included sample ``i``;
    ``backward_passes[i]`` the gradient computations that flowed back through those outputs.
    ``restrict(index)`` gives the view of a sub-batch (the attacks call it when they run only
    some samples), sharing the same tallies.
    """

    def __init__(
        self,
        model: Callable[[torch.Tensor], torch.Tensor],
        n: int,
        rows: torch.Tensor | None = None,
        tallies: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        self.model = model
        self.forward_passes, self.backward_passes = tallies or (
            torch.zeros(n, dtype=torch.int64),
            torch.zeros(n, dtype=torch.int64),
        )
        self.rows = torch.arange(n) if rows is None else rows.cpu()

    def restrict(self, index: torch.Tensor) -> CountingModel:
        """The view of the rows ``index`` (positions in this view's batch)."""
        rows = self.rows[index.cpu()]
        return CountingModel(self.model, len(rows), rows, (self.forward_passes, self.backward_passes))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != len(self.rows):
            raise ValueError(f"counting model: batch of {x.shape[0]} for a view of {len(self.rows)} rows")
        logits = self.model(x)
        self.forward_passes[self.rows] += 1
        if logits.requires_grad:
            rows = self.rows

            def count_backward(grad: torch.Tensor) -> None:
                self.backward_passes[rows] += 1

            logits.register_hook(count_backward)
        return logits
