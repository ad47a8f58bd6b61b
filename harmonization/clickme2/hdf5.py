"""Read the lab's processed clickmap files (HDF5): a ``clickmaps`` group with one group per image
(named by its id with ``/`` as ``_``) holding ``clickmap`` (1, H, W) and ``bin_clickmaps``, the
id in the attribute ``original_path``; a ``click_counts`` group with each image's participant
count; a ``metadata`` group.

Only data stored inside the file is read: a dataset with external storage, a virtual dataset or an
external link is refused with an error naming the file and key.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import h5py
import numpy as np

from harmonization.clickme2.errors import bad_click_file


@dataclass(frozen=True)
class StoredMap:
    """One image's clickmap from an HDF5 file: its id, the (H, W) map, its participant count."""

    image_id: str
    clickmap: np.ndarray
    participants: int | None
    key: str


def _member(group: h5py.Group, name: str, path: str, key: str):
    """``group[name]`` when it is stored in the file itself (a hard link), else an error."""
    link = group.get(name, getlink=True)
    if link is None:
        raise bad_click_file(path, f"key {key!r}", "missing")
    if isinstance(link, h5py.ExternalLink):
        raise bad_click_file(path, f"key {key!r}", "is an external link (only data inside the file is read)")
    if not isinstance(link, h5py.HardLink):
        raise bad_click_file(path, f"key {key!r}", f"is a {type(link).__name__} (only stored objects are read)")
    return group[name]


def _dataset(group: h5py.Group, name: str, path: str, key: str) -> h5py.Dataset:
    item = _member(group, name, path, key)
    if not isinstance(item, h5py.Dataset):
        raise bad_click_file(path, f"key {key!r}", "is not a dataset")
    if item.is_virtual:
        raise bad_click_file(path, f"key {key!r}", "is a virtual dataset (only data inside the file is read)")
    if item.id.get_create_plist().get_external_count():
        raise bad_click_file(path, f"key {key!r}", "has external storage (only data inside the file is read)")
    return item


def _number(dataset: h5py.Dataset, path: str, key: str) -> np.ndarray:
    value = dataset[()]
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise bad_click_file(path, f"key {key!r}", f"holds {array.dtype}, not numbers")
    return array


def iter_clickmaps(path: str | os.PathLike) -> Iterator[StoredMap]:
    """Each stored clickmap of the file, in the file's key order; the map is the last (or only)
    plane of ``clickmap``, float64, checked finite and non-negative."""
    path = os.fspath(path)
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise bad_click_file(path, "", f"not a readable HDF5 file ({error})") from error
    with handle:
        clickmaps = _member(handle, "clickmaps", path, "clickmaps")
        if not isinstance(clickmaps, h5py.Group):
            raise bad_click_file(path, "key 'clickmaps'", "is not a group")
        counts = _member(handle, "click_counts", path, "click_counts") if "click_counts" in handle.keys() else None
        for name in clickmaps:
            key = f"clickmaps/{name}"
            entry = _member(clickmaps, name, path, key)
            if not isinstance(entry, h5py.Group):
                raise bad_click_file(path, f"key {key!r}", "is not a group")
            array = _number(_dataset(entry, "clickmap", path, f"{key}/clickmap"), path, f"{key}/clickmap")
            if array.ndim not in (2, 3) or min(array.shape[-2:]) < 1:
                raise bad_click_file(path, f"key '{key}/clickmap'", f"shape {array.shape} is not (1, H, W)")
            clickmap = np.asarray(array.reshape((-1,) + array.shape[-2:])[-1], np.float64)
            if not np.all(np.isfinite(clickmap)) or (clickmap < 0).any():
                raise bad_click_file(path, f"key '{key}/clickmap'", "holds negative or non-finite values")
            original = entry.attrs.get("original_path", name)
            image_id = original.decode("utf-8") if isinstance(original, bytes) else str(original)
            participants = None
            if isinstance(counts, h5py.Group) and name in counts:
                count = _number(_dataset(counts, name, path, f"click_counts/{name}"), path, f"click_counts/{name}")
                participants = int(count.ravel()[0])
            yield StoredMap(image_id, clickmap, participants, key)
