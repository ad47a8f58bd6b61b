"""Rank, world size and device of a sweep process under ``torchrun`` (or alone)."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from attacks_torch.sweep.errors import SweepError


class Distributed:
    """Rank, world size and device of this process; collectives are no-ops in a single process.

    Under ``torchrun`` (RANK / WORLD_SIZE / LOCAL_RANK set) it joins the process group: gloo on
    CPU, NCCL on CUDA, one GPU per local rank.
    """

    def __init__(self, device: str, timeout_hours: float = 48.0) -> None:
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        cuda = device.startswith("cuda")
        if cuda and not torch.cuda.is_available():
            raise SweepError.about("device", " cuda: no CUDA device is available")
        self.device = torch.device(f"cuda:{local_rank}" if cuda else "cpu")
        if cuda:
            torch.cuda.set_device(self.device)
        self._owns_group = self.world_size > 1 and not dist.is_initialized()
        if self._owns_group:
            dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(hours=timeout_hours))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value`` (a picklable object), in rank order, on every rank."""
        if self.world_size == 1:
            return [value]
        values = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def close(self) -> None:
        if self._owns_group:
            dist.destroy_process_group()
