"""Process-wide memory tuning (standard library only): malloc for the array-heavy loops of both
packages, and no garbage collection at the exit of a command."""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import functools
import gc
from collections.abc import Callable

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


@functools.cache
def _mallopt() -> Callable[[int, int], int] | None:
    """glibc's ``mallopt``, or None where there is none (looked up once: ``find_library`` is slow)."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return None


def retain_freed_memory(mmap_threshold: int = 256 << 20, trim_threshold: int = 1 << 30) -> bool:
    """Let glibc keep freed memory for reuse instead of handing it back to the OS at once.

    numpy ranking chunks and torch attack steps free and re-allocate the same large buffers again
    and again; by default glibc unmaps them and every step page-faults them back in (1000 224x224
    Spearman pairs: 2.6 million faults, ~40% of the time; efficientnet-lite0 forward+backward on 10
    images: 139,000 faults a step, slower batched than image by image). Buffers below
    ``mmap_threshold`` come from the heap, which keeps up to ``trim_threshold`` free at its top.
    Returns whether it took effect (False outside glibc).

    The setting is process-wide and others change it: TensorFlow sets the mmap threshold back to
    128 KiB whenever it builds a ``tf.data.Dataset.from_generator`` kernel (``load_clickme``'s
    training reader builds one per iteration). So the loops that rely on it (``minimal_epsilon``,
    the minimum-norm ``find_minimal``, ``saliency_maps``, ``spearman``) call this again on entry; a call costs
    two ``mallopt``.
    """
    mallopt = _mallopt()
    if mallopt is None:
        return False
    took = bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold) or mallopt(_M_MMAP_THRESHOLD, 32 << 20))
    return bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold)) and took


@functools.cache
def skip_collection_at_exit() -> None:
    """At interpreter exit, leave the objects alive then to the operating system instead of
    collecting them.

    TensorFlow, torch and JAX leave millions of objects behind; the collections Python runs while
    it shuts down walk all of them (seconds per process: docs/traps.md, "Shutdown"). ``gc.freeze`` at exit (after the exit handlers registered
    later, before the shutdown's collections) takes them out of those walks. The console scripts
    call it; a program that relies on a finalizer of an object in a reference cycle running at
    exit should not. Called again, it does nothing.
    """
    atexit.register(gc.freeze)
