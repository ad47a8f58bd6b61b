"""ClickMe batches as a ``torch.utils.data`` dataset, over the framework-neutral core.

``ClickMeBatches`` yields whole batches (dicts of torch tensors, NHWC as docs/data-contracts.md),
so it is used with ``DataLoader(dataset, batch_size=None, num_workers=...)``: DataLoader worker
``w`` of ``n`` builds batches ``w, w + n, ...``, and the loader returns them in order. Under
``torch.distributed`` each process takes its own slice of every global batch
(``harmonization.inputs.core``), so the processes' batches together are the batch one process
with ``world_size`` times the batch size sees. Call ``set_epoch`` before each epoch, as with a
``DistributedSampler``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from harmonization.inputs.core import ClickMeInputs


def _process() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class ClickMeBatches(IterableDataset):
    """The batches of one epoch of ``inputs`` for this process (``rank``/``world_size`` default to
    torch.distributed's, else 0/1); ``repeat``: the epochs follow one another without end."""

    def __init__(
        self, inputs: ClickMeInputs, rank: int | None = None, world_size: int | None = None, repeat: bool = False
    ):
        default_rank, default_world = _process()
        self.inputs = inputs
        self.rank = default_rank if rank is None else rank
        self.world_size = default_world if world_size is None else world_size
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank must lie in [0, {self.world_size}), got {self.rank}")
        self.repeat = repeat
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The epoch the next iteration starts at (its order, crops and flips)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.inputs.num_batches(self.inputs.plan(self.epoch), self.rank, self.world_size)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        epoch, passed = self.epoch, 0  # passed: batches of the epochs before, in this stream
        while True:
            plan = self.inputs.plan(epoch)
            count = self.inputs.num_batches(plan, self.rank, self.world_size)
            # worker w takes the stream's batches w, w + W, ... across epoch ends, so that the
            # loader's round robin over the workers hands them out in order
            for index in range((worker - passed) % workers, count, workers):
                batch = self.inputs.batch(plan, epoch, index, self.rank, self.world_size)
                yield {name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in batch.items()}
            if not self.repeat:
                return
            epoch, passed = epoch + 1, passed + count


def clickme_loader(inputs: ClickMeInputs, num_workers: int = 2, repeat: bool = False, **loader_options) -> DataLoader:
    """A DataLoader of ``ClickMeBatches(inputs, repeat=repeat)`` with ``num_workers`` workers."""
    options = dict(prefetch_factor=4, persistent_workers=False) if num_workers else {}
    options.update(loader_options)
    return DataLoader(ClickMeBatches(inputs, repeat=repeat), batch_size=None, num_workers=num_workers, **options)
