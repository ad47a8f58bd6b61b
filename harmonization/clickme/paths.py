"""Which shard files a path names: one rule for the training and the attack readers.

A path may be a file, a directory (its ``*.tfrecord*`` files), a glob, or a list of them; the
files come back sorted within each item, in the order of the items, without repeats. A name that
exists as a file is that file, even when it holds glob characters (``s[12].tfrecords``).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable

ShardPaths = str | os.PathLike | Iterable[str | os.PathLike]
"""What the readers accept as their shards: a path, a directory, a glob, or a list of them."""

SHARD_PATTERN = "*.tfrecord*"
"""The files of a directory that count as its shards."""


def resolve_shards(paths_or_glob: ShardPaths, what: str) -> list[str]:
    """The shard files named by ``paths_or_glob``; ``what`` ("ClickMe shard", "stimulus file") names
    them in the errors.

    Raises FileNotFoundError with one line naming the item: a missing path, a glob that matches no
    file, a directory without shards, or nothing given at all.
    """
    items = [paths_or_glob] if isinstance(paths_or_glob, (str, os.PathLike)) else list(paths_or_glob)
    if not items:
        raise FileNotFoundError(f"no {what} given")
    found: list[str] = []
    for item in map(os.fspath, items):
        if os.path.isdir(item):
            matches = sorted(p for p in glob.glob(os.path.join(glob.escape(item), SHARD_PATTERN)) if os.path.isfile(p))
            if not matches:
                raise FileNotFoundError(f"no {what} in directory {item!r} (it holds no {SHARD_PATTERN} file)")
        elif os.path.isfile(item):  # a file's literal name wins over reading it as a glob
            matches = [item]
        elif glob.has_magic(item):
            matches = sorted(p for p in glob.glob(item) if os.path.isfile(p))
            if not matches:
                raise FileNotFoundError(f"no {what} matches {item!r}")
        else:
            raise FileNotFoundError(f"no {what} at {item!r} (no such file or directory)")
        found.extend(matches)
    return list(dict.fromkeys(found))
