"""ClickMe stimulus sets as torch tensors: a thin adapter over :mod:`harmonization.clickme`.

Both published layouts are read (see ``harmonization.clickme.layout``), with the same record
checks and the same one-line messages as the training reader; JPEG clicks are diffused here in
torch with the constants of ``harmonization.clickme.diffusion``. Images come out in [0, 1]
(pixel / 255), heatmaps on the image's grid.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from harmonization.clickme import (
    ClickMeDataError,
    ShardPaths,
    bad_record,
    iter_clickme,
    resolve_shards,
    unit_range_warning,
)
from harmonization.clickme.diffusion import DIFFUSION_SIZE, diffusion_kernel, same_padding

LOGGER = logging.getLogger("attacks_torch.stimuli")


@dataclass
class Stimuli:
    """Images (N, 3, H, W) in [0, 1], labels (N,) int64, heatmaps (N, H, W), ids stable across runs."""

    images: torch.Tensor
    labels: torch.Tensor
    heatmaps: torch.Tensor
    ids: list[str]

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, index: slice | Sequence[int]) -> Stimuli:
        """The stimuli at ``index`` (a slice or a list of positions), in that order."""
        if isinstance(index, slice):
            return Stimuli(self.images[index], self.labels[index], self.heatmaps[index], self.ids[index])
        positions = torch.as_tensor(list(index), dtype=torch.long)
        return Stimuli(
            self.images[positions],
            self.labels[positions],
            self.heatmaps[positions],
            [self.ids[i] for i in positions.tolist()],
        )

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the images and heatmaps."""
        return int(self.images.shape[-2]), int(self.images.shape[-1])


def diffuse(heatmap: torch.Tensor) -> torch.Tensor:
    """The method's diffusion of raw ClickMe clicks (H, W) -> (H, W) on the same grid.

    Bilinear resize (half-pixel centres, no antialiasing, like ``tf.image.resize``) to 64x64,
    convolution with the diffusion kernel with TensorFlow's SAME zero padding, bilinear resize back.
    """
    height, width = heatmap.shape
    small = F.interpolate(
        heatmap[None, None].float(), size=(DIFFUSION_SIZE, DIFFUSION_SIZE), mode="bilinear", align_corners=False
    )
    kernel = torch.from_numpy(diffusion_kernel())[None, None]
    before, after = same_padding()
    blurred = F.conv2d(F.pad(small, (before, after, before, after)), kernel)
    return F.interpolate(blurred, size=(height, width), mode="bilinear", align_corners=False)[0, 0]


def stimulus_files(path_or_glob: ShardPaths) -> list[str]:
    """The stimulus files named by a path, a folder, a glob or a list of them (the one path rule of
    ``harmonization.clickme.paths``); FileNotFoundError in one line if there are none."""
    return resolve_shards(path_or_glob, "stimulus file")


def image_id_prefixes(files: Sequence[str]) -> dict[str, str]:
    """{file: its name in image ids}: the path relative to the deepest folder every file lies in, so
    files of one name in two folders stay apart. A ValueError names a file given twice (by another
    spelling of its path, or a link), whose images would be counted twice."""
    real = [os.path.realpath(path) for path in files]
    seen: dict[str, str] = {}
    for path, resolved in zip(files, real):
        if resolved in seen:
            raise ClickMeDataError(f"stimulus file {path!r} is the same file as {seen[resolved]!r}; give it once")
        seen[resolved] = path
    root = os.path.commonpath([os.path.dirname(os.path.abspath(path)) for path in files])
    return {path: os.path.relpath(os.path.abspath(path), root).replace(os.sep, "/") for path in files}


def load_stimuli(path_or_glob: ShardPaths, *, limit: int | None = None, num_classes: int | None = None) -> Stimuli:
    """Read ClickMe TFRecords (either layout) into a Stimuli set.

    Files are read in sorted name order; ids are ``"<file>:<record index>"``, the file named by its
    path relative to the folder all the files share (its bare name when they share one folder).
    ``limit`` keeps the first records only; ``num_classes`` bounds the labels (None: non-negative
    only). Every image must share one grid; resizing to a model is the model wrapper's job
    (``PixelModel``). A file given twice (another spelling, a link) is refused.
    Raises FileNotFoundError for a path naming no file and ClickMeDataError (a ValueError) with one
    line naming the file and record for bad input; logs a warning when the images look like [0, 1]
    data stored in the [0, 255] layout.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    files = stimulus_files(path_or_glob)
    names = image_id_prefixes(files)
    images, heatmaps, labels, ids = [], [], [], []
    for path in files:
        remaining = None if limit is None else limit - len(ids)
        for index, record in enumerate(itertools.islice(iter_clickme(path, num_classes), remaining)):
            if images and record.image.shape != images[0].shape:
                first, this = images[0].shape, record.image.shape
                raise ClickMeDataError(
                    bad_record(
                        "ClickMe",
                        path,
                        index,
                        f"image is {this[0]}x{this[1]}, the first "
                        f"one {first[0]}x{first[1]}; a stimulus set shares one size",
                    )
                )
            heatmap = diffuse(torch.from_numpy(record.heatmap)).numpy() if record.clicks else record.heatmap
            images.append(record.image)
            heatmaps.append(heatmap)
            labels.append(record.label)
            ids.append(f"{names[path]}:{index}")
        if limit is not None and len(ids) >= limit:
            break
    if not ids:
        raise ClickMeDataError(f"{', '.join(files)}: holds no records")
    pixels = np.stack(images)
    warning = unit_range_warning(float(pixels.max()), ", ".join(files))
    if warning is not None:
        LOGGER.warning(warning)
    return Stimuli(
        images=torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous().div_(255.0),
        labels=torch.tensor(labels, dtype=torch.int64),
        heatmaps=torch.from_numpy(np.stack(heatmaps)),
        ids=ids,
    )
