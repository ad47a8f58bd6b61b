"""What a training run was trained on and what it wrote, cheaply fingerprinted for its resumes.

A run records, per data argument, each shard's size and a sha256 of its first and last MiB, and,
once complete, the sha256 of its model file. A resume then refuses data regenerated under the
same names, and a rerun calls a run complete only while its model file is the one it wrote.
"""

from __future__ import annotations

import hashlib
import os

from harmonization.clickme.paths import resolve_shards

EDGE_BYTES = 2**20
"""How much of each end of a shard is hashed (its size covers the rest)."""
DATA_FIELDS = ("train", "val", "mix_with")
"""The ``TrainConfig`` fields whose shards shape the trained model."""


def shard_fingerprint(path: str) -> list:
    """[size, sha256 of the first and the last ``EDGE_BYTES``] of one file."""
    size = os.path.getsize(path)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        digest.update(handle.read(EDGE_BYTES))
        if size > EDGE_BYTES:
            handle.seek(max(size - EDGE_BYTES, EDGE_BYTES))
            digest.update(handle.read(EDGE_BYTES))
    return [size, digest.hexdigest()]


def data_fingerprint(sources: dict[str, str | None]) -> dict[str, dict[str, list]]:
    """{field: {absolute shard path: ``shard_fingerprint``}} for each given data source."""
    return {
        field: {os.path.abspath(path): shard_fingerprint(path) for path in resolve_shards(source, "ClickMe shard")}
        for field, source in sources.items()
        if source
    }


def data_changes(recorded: dict, current: dict) -> list[tuple[str, str]]:
    """(field, what changed) for each data source whose shards differ from the recorded ones."""
    changes = []
    for field in sorted(set(recorded) | set(current)):
        old, new = recorded.get(field, {}), current.get(field, {})
        if old == new:
            continue
        gone = sorted(set(old) - set(new))
        added = sorted(set(new) - set(old))
        altered = sorted(path for path in set(old) & set(new) if old[path] != new[path])
        what = (
            f"{altered[0]} has other content"
            if altered
            else f"{gone[0]} is no longer among its shards"
            if gone
            else f"{added[0]} was added"
        )
        changes.append((field, what))
    return changes


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a whole file (the trained model's)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(2**22), b""):
            digest.update(block)
    return digest.hexdigest()
