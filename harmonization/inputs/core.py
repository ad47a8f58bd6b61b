"""The framework-neutral ClickMe input core: which records make each batch of an epoch, and how
each example is decoded, augmented and diffused, all in numpy and deterministic per seed.

An epoch is a fixed plan drawn from ``(seed, epoch)``: the order of the records (shuffled for
"train", file order otherwise) and, when mixing, which positions take an ImageNet-style example
(token 0, zero map) instead of a ClickMe one. Each example's crop and flip come from
``(seed, epoch, position)``, so a batch is the same whichever process or worker builds it. With
several processes, global batch ``k`` is ``world * batch_size`` consecutive examples of the plan and
process ``rank`` takes its ``rank``-th ``batch_size`` slice: the processes together see what one
process with the global batch sees. The torch adapter is ``harmonization.inputs.torch_data``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from harmonization.clickme import ClickMeDataError
from harmonization.clickme.paths import ShardPaths
from harmonization.clickme.reader import warn_if_unit_range
from harmonization.inputs import transforms
from harmonization.inputs.records import Shards, index_shards, read_clickme, read_imagenet

LOGGER = logging.getLogger("harmonization.inputs")
SPLITS = ("train", "val", "test")
_CROP, _MIXUP, _ORDER = 1, 2, 3  # streams of the seed tree


@dataclass(frozen=True)
class Plan:
    """One epoch: per position, the source (1 ClickMe, 0 ImageNet-style) and the record index."""

    token: np.ndarray
    record: np.ndarray

    def __len__(self) -> int:
        return len(self.record)


def check_arguments(
    split: str,
    batch_size: int,
    image_size: int,
    num_classes: int,
    mixing: bool,
    clickme_fraction: float,
    crop_area: tuple[float, float],
) -> None:
    """Refuse (ValueError) reader arguments that cannot be read; both readers (this core and the
    tf.data pipeline) check with it."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    for name, value in (("batch_size", batch_size), ("image_size", image_size), ("num_classes", num_classes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if mixing and not 0.0 < clickme_fraction < 1.0:
        raise ValueError(f"clickme_fraction must lie in (0, 1) when mixing, got {clickme_fraction}")
    if not 0.0 < crop_area[0] <= crop_area[1] <= 1.0:
        raise ValueError(f"crop_area must satisfy 0 < low <= high <= 1, got {crop_area}")


class ClickMeInputs:
    """ClickMe shards (both published layouts) -> numpy batches following docs/data-contracts.md:
    ``image`` float32 (N, S, S, 3) in [0, 255], ``heatmap`` float32 (N, S, S, 1), ``label`` int64
    (N,) (float32 (N, C) after mixup), ``token`` float32 (N,).

    The arguments mean what they mean for ``harmonization.data.load_clickme``: "train" shuffles
    and crops (Inception area ``crop_area``, aspect 3/4 to 4/3) and flips image and map together,
    "val" takes the central 0.875 crop, "test" only resizes; raw clicks (the JPEG layout) are
    diffused at the output size when ``diffuse``; ``mix_with`` mixes ImageNet-style shards in with
    token 0 and a zero map, a ``clickme_fraction`` share coming from ClickMe (which repeats; the
    epoch ends with the ImageNet shards); ``mixup`` (alpha) mixes each process's batch with a
    permutation of itself. ``drop_remainder`` defaults to True for "train". ``check_data``: every
    record's data checksum is verified as it is read (the length headers always are, up front);
    False saves about a quarter of the time per 256x256 JPEG example. As ``load_clickme``, it logs a
    warning when the first record of every shard looks like [0, 1] data.
    """

    def __init__(
        self,
        paths: ShardPaths,
        split: str = "train",
        batch_size: int = 32,
        image_size: int = 224,
        num_classes: int = 1000,
        *,
        seed: int = 0,
        diffuse: bool = True,
        mix_with: ShardPaths | None = None,
        clickme_fraction: float = 0.2,
        crop_area: tuple[float, float] = (0.08, 1.0),
        drop_remainder: bool | None = None,
        mixup: float | None = None,
        check_data: bool = True,
    ):
        check_arguments(split, batch_size, image_size, num_classes, mix_with is not None, clickme_fraction, crop_area)
        if mixup is not None and mixup <= 0:
            raise ValueError(f"mixup alpha must be positive, got {mixup}")
        self.split, self.batch_size, self.image_size = split, batch_size, image_size
        self.num_classes, self.seed, self.diffuse = num_classes, int(seed), diffuse
        self.clickme_fraction, self.crop_area, self.mixup = clickme_fraction, tuple(crop_area), mixup
        self.drop_remainder = split == "train" if drop_remainder is None else drop_remainder
        self.check_data = check_data
        self.clickme: Shards = index_shards(paths, "ClickMe shard")
        self.imagenet: Shards | None = None if mix_with is None else index_shards(mix_with, "ImageNet shard (mix_with)")
        for shards in (self.clickme, self.imagenet):
            if shards is not None and not len(shards):
                raise ClickMeDataError(f"{', '.join(shards.paths)}: the shards hold no records")
        warn_if_unit_range(
            self.clickme.paths, np.bincount(self.clickme.shard, minlength=len(self.clickme.paths)), LOGGER
        )

    def plan(self, epoch: int = 0) -> Plan:
        """The records of ``epoch``, in order."""
        return draw_plan(
            self.seed,
            self.split,
            epoch,
            len(self.clickme),
            None if self.imagenet is None else len(self.imagenet),
            self.clickme_fraction,
        )

    def num_batches(self, plan: Plan, rank: int = 0, world_size: int = 1) -> int:
        """Batches process ``rank`` of ``world_size`` takes from an epoch of ``plan`` (global
        batches of ``world_size * batch_size``; without ``drop_remainder`` the last one is cut
        short and the processes past its end take none)."""
        if self.drop_remainder:
            return len(plan) // (self.batch_size * world_size)
        slices = -(-len(plan) // self.batch_size)
        return max(0, -(-(slices - rank) // world_size))

    def example(self, plan: Plan, epoch: int, position: int) -> tuple[np.ndarray, np.ndarray, int]:
        """(image (S, S, 3), heatmap (S, S, 1), label) at ``position`` of the epoch."""
        if plan.token[position]:
            record = read_clickme(self.clickme, int(plan.record[position]), self.num_classes, self.check_data)
        else:
            record = read_imagenet(self.imagenet, int(plan.record[position]), self.num_classes, self.check_data)
        image, heatmap, size = record.image, record.heatmap[..., None], self.image_size
        if self.split == "train":
            draws = crop_draws(self.seed, epoch, position)
            window = transforms.window_from_draws(draws, *image.shape[:2], area_range=self.crop_area)
            image, heatmap = transforms.crop_resize_flip(
                image, heatmap, window, transforms.flip_from_draws(draws), size
            )
        elif self.split == "val":
            image, heatmap = transforms.center_crop(image, heatmap, size)
        else:
            image, heatmap = transforms.resize(image, (size, size)), transforms.resize(heatmap, (size, size))
        if self.diffuse and record.clicks:
            heatmap = transforms.diffuse(heatmap)
        return image, heatmap, record.label

    def batch(self, plan: Plan, epoch: int, index: int, rank: int = 0, world_size: int = 1) -> dict:
        """Process ``rank``'s share of global batch ``index`` of ``epoch`` (see ``num_batches``)."""
        start = (index * world_size + rank) * self.batch_size
        examples = [
            self.example(plan, epoch, position) for position in range(start, min(start + self.batch_size, len(plan)))
        ]
        if not examples:
            raise IndexError(f"batch {index} of process {rank}/{world_size}: past the end of the epoch")
        batch = {
            "image": np.stack([e[0] for e in examples]),
            "heatmap": np.stack([e[1] for e in examples]),
            "label": np.array([e[2] for e in examples], np.int64),
            "token": plan.token[start : start + len(examples)].copy(),
        }
        if self.mixup is not None:
            weight, order = mixup_draws(self.seed, epoch, index, rank, len(examples), self.mixup)
            batch = transforms.mixup(batch, self.num_classes, weight, order)
        return batch


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, *keys])


def _order(seed: int, split: str, count: int, epoch: int, stream: int) -> np.ndarray:
    if split != "train":
        return np.arange(count)
    return _rng(seed, _ORDER, epoch, stream).permutation(count)


def draw_plan(
    seed: int, split: str, epoch: int, clickme_count: int, imagenet_count: int | None, clickme_fraction: float
) -> Plan:
    """The plan of ``epoch`` over ``clickme_count`` ClickMe records (and ``imagenet_count``
    ImageNet-style ones when mixing): every reader of the same records draws the same one."""
    clickme = _order(seed, split, clickme_count, epoch, 0)
    if imagenet_count is None:
        return Plan(np.ones(len(clickme), np.float32), clickme)
    imagenet = _order(seed, split, imagenet_count, epoch, 1)
    picks = (
        _rng(seed, _ORDER, epoch, 2).random(int(len(imagenet) / (1 - clickme_fraction) * 1.5) + 64) < clickme_fraction
    )
    while np.count_nonzero(~picks) < len(imagenet):
        picks = np.concatenate([picks, _rng(seed, _ORDER, epoch, 2, len(picks)).random(len(picks)) < clickme_fraction])
    picks = picks[: np.flatnonzero(~picks)[len(imagenet) - 1] + 1] if len(imagenet) else picks[:0]
    record = np.empty(len(picks), np.int64)
    record[~picks] = imagenet
    taken = np.count_nonzero(picks)
    repeats = -(-taken // max(len(clickme), 1))
    record[picks] = np.concatenate(
        [clickme] + [_order(seed, split, len(clickme), epoch, 3 + r) for r in range(1, repeats)]
    )[:taken]
    return Plan(picks.astype(np.float32), record)


def crop_draws(seed: int, epoch: int, position: int) -> np.ndarray:
    """The numbers behind the training crop and flip at ``position`` of ``epoch``
    (``transforms.window_from_draws``)."""
    return transforms.crop_draws(_rng(seed, _CROP, epoch, position))


def mixup_draws(seed: int, epoch: int, index: int, rank: int, n: int, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """(weight, order) of the mixup of process ``rank``'s ``n`` examples of global batch ``index``."""
    return transforms.mixup_draws(_rng(seed, _MIXUP, epoch, index, rank), n, alpha)
