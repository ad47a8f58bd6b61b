"""Convert a click file (CSV, NPZ) or a processed clickmap file (HDF5) and an image folder to
ClickMe shards with each image's split-half ceiling (docs/clickme2.md).

Images are written in id order, ``shard_size`` per shard, each shard as its own set
``clickme2-NNNNN-00000-of-00001.tfrecords`` (written atomically) followed by ``parts/NNNNN.json``
(its records' ids, labels, ceilings). A rerun with the same input and settings skips the shards
whose part file exists; the merged ``ceilings.json`` is written last.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from harmonization.clickme import write_clickme
from harmonization.clickme2.ceiling import image_rng, split_half_ceiling
from harmonization.clickme2.errors import bad_click_file
from harmonization.clickme2.filtering import Settings, filter_trials
from harmonization.clickme2.hdf5 import iter_clickmaps
from harmonization.clickme2.maps import build_maps, image_in_model_frame, to_model_frame
from harmonization.clickme2.reading import CATCH_THRESHOLD, read_clicks
from harmonization.files import write_json

CEILINGS = "ceilings.json"
MANIFEST = "clickme2.json"
SHARD_NAME = "clickme2-{index:05d}-00000-of-00001.tfrecords"


@dataclass(frozen=True)
class Item:
    """One image to convert: its id, class label, where the input names it, and its clicks (a list
    of participants' click lists) or its stored map (an (H, W) array)."""

    image_id: str
    label: int
    where: str
    clicks: list | None = None
    stored: np.ndarray | None = None


def _read_json(path: str) -> dict | None:
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _class_names(image_root: str, classes: list[str] | None) -> list[str]:
    if classes is not None:
        return classes
    return sorted(entry.name for entry in os.scandir(image_root) if entry.is_dir())


def _label(image_id: str, names: dict[str, int], path: str, where: str) -> int:
    if "/" not in image_id:
        raise bad_click_file(path, where, f"image {image_id!r} has no class folder (expected CLASS/FILE)")
    folder = image_id.split("/")[0]
    if folder not in names:
        raise bad_click_file(
            path,
            where,
            f"class {folder!r} of image {image_id!r} is not a class of the "
            "image root (its sub-folders) or of --classes",
        )
    return names[folder]


def load_items(
    path: str,
    image_root: str,
    settings: Settings,
    classes: list[str] | None = None,
    catch_threshold: float = CATCH_THRESHOLD,
    filter_mobile: bool = True,
) -> tuple[list[Item], dict[str, int]]:
    """The images to convert, sorted by id, and the counts of what the filters removed. Every image
    must exist under ``image_root`` (else an error naming the file and row or key)."""
    names = {name: index for index, name in enumerate(_class_names(image_root, classes))}
    if path.lower().endswith((".h5", ".hdf5")):
        found = [(stored.image_id, stored.key, None, stored.clickmap) for stored in iter_clickmaps(path)]
        counts = {"images": len(found)}
    else:
        table = read_clicks(path, catch_threshold, filter_mobile)
        filtered = filter_trials(table.trials, settings)
        counts = dict(filtered.counts)
        if path.lower().endswith(".npz"):
            counts["rows dropped (catch trials failed, or mobile)"] = table.dropped_by_catch
        found = [(key, filtered.first_row[key], lists, None) for key, lists in filtered.images.items()]
    items = []
    for image_id, where, clicks, stored in sorted(found, key=lambda entry: entry[0]):
        if not os.path.isfile(os.path.join(image_root, image_id)):
            raise bad_click_file(path, where, f"image {image_id!r} not found under {image_root}")
        items.append(Item(image_id, _label(image_id, names, path, where), where, clicks, stored))
    return items, counts


def _example(item: Item, image_root: str, settings: Settings, path: str) -> tuple[dict | None, dict]:
    """The shard example of one image and its part-file entry (None: no participant left)."""
    image_path = os.path.join(image_root, item.image_id)
    try:
        image = Image.open(image_path)
        image.load()
    except (OSError, Image.DecompressionBombError) as error:
        raise bad_click_file(path, item.where, f"image {image_path} cannot be read ({error})") from error
    entry = {"id": item.image_id, "label": item.label}
    if item.stored is not None:
        frame = item.stored.shape
        heatmap = to_model_frame(item.stored, settings)
        entry.update(ceiling=float("nan"), participants=None)
    else:
        frame = (image.height, image.width) if settings.native_size else tuple(settings.image_shape)
        maps = build_maps(item.clicks, frame, settings)
        if maps is None:
            return None, entry
        heatmap = to_model_frame(maps.mean_map(), settings)
        entry.update(
            ceiling=split_half_ceiling(maps, settings, image_rng(settings, item.image_id)),
            participants=maps.participants,
        )
    pixels = image_in_model_frame(image, frame, settings)
    return {"image": pixels, "heatmap": heatmap.astype(np.float32), "label": item.label}, entry


def _fingerprint(path: str, settings: Settings, items: list[Item], layout: str, shard_size: int) -> dict:
    digest = hashlib.sha256("\n".join(f"{item.image_id}\t{item.label}" for item in items).encode()).hexdigest()
    return {
        "source": os.path.abspath(path),
        "settings": settings.as_dict(),
        "layout": layout,
        "shard_size": shard_size,
        "images": len(items),
        "images_sha256": digest,
    }


def merge_parts(out_dir: str, shards: int, fingerprint: dict) -> dict:
    """Write ``ceilings.json``: each shard's records (id, label, ceiling, participants) and the mean."""
    table: dict[str, list[dict]] = {}
    for index in range(shards):
        part = _read_json(os.path.join(out_dir, "parts", f"{index:05d}.json"))
        if part["records"]:
            table[SHARD_NAME.format(index=index)] = part["records"]
    ceilings = np.array([r["ceiling"] for records in table.values() for r in records], np.float64)
    finite = ceilings[np.isfinite(ceilings)]
    result = {
        "format": "clickme2-ceilings",
        "version": 1,
        "metric": "spearman, split-half",
        "mean_ceiling": float(finite.mean()) if finite.size else float("nan"),
        "measured": int(finite.size),
        "records": int(ceilings.size),
        "shards": table,
        **fingerprint,
    }
    write_json(os.path.join(out_dir, CEILINGS), result)
    return result


def convert(
    path: str,
    image_root: str,
    out_dir: str,
    settings: Settings = Settings(),
    classes: list[str] | None = None,
    shard_size: int = 256,
    layout: str = "stimulus",
    catch_threshold: float = CATCH_THRESHOLD,
    filter_mobile: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    """Convert ``path`` (see the module docstring); returns the ``ceilings.json`` content."""
    from tqdm.auto import tqdm

    if layout == "stimulus" and settings.center_crop[0] != settings.center_crop[1]:
        raise ValueError(f"the stimulus layout stores square images: center_crop {settings.center_crop} is not")
    items, counts = load_items(path, image_root, settings, classes, catch_threshold, filter_mobile)
    for what, number in counts.items():
        log(f"{what}: {number}")
    if not items:
        raise bad_click_file(path, "", "no image is left after the filters")
    fingerprint = _fingerprint(path, settings, items, layout, shard_size)
    manifest_path = os.path.join(out_dir, MANIFEST)
    previous = _read_json(manifest_path)
    if previous is not None and previous != fingerprint:
        raise ValueError(
            f"{out_dir} holds a conversion of another input or with other settings "
            f"(see {manifest_path}): choose another --out"
        )
    if previous is None:
        write_json(manifest_path, fingerprint)
    chunks = [items[start : start + shard_size] for start in range(0, len(items), shard_size)]
    done = [os.path.isfile(os.path.join(out_dir, "parts", f"{i:05d}.json")) for i in range(len(chunks))]
    skipped = 0
    with tqdm(
        total=len(items),
        initial=sum(len(c) for c, d in zip(chunks, done) if d),
        unit="image",
        desc="clickme2",
        disable=not sys.stderr.isatty(),
    ) as bar:
        for index, chunk in enumerate(chunks):
            if done[index]:
                continue
            examples, records = [], []
            for item in chunk:
                example, entry = _example(item, image_root, settings, path)
                bar.update(1)
                if example is None:
                    skipped += 1
                    continue
                examples.append(example)
                records.append(entry)
            if examples:
                write_clickme(
                    examples, out_dir, shard_size=len(examples), layout=layout, prefix=f"clickme2-{index:05d}"
                )
            write_json(os.path.join(out_dir, "parts", f"{index:05d}.json"), {"records": records})
    if skipped:
        log(f"images without a participant with {settings.min_clicks} clicks inside the image (skipped): {skipped}")
    result = merge_parts(out_dir, len(chunks), fingerprint)
    log(
        f"wrote {result['records']} images in {len(result['shards'])} shard(s) to {out_dir}; "
        f"mean split-half ceiling {result['mean_ceiling']:.4f} over {result['measured']} images"
    )
    return result
