"""Whether output goes to a person or to a log: progress bars only for a person.

A bar redrawn with carriage returns and escape sequences is unreadable in a log file or a CI
transcript, so both sides draw bars (tqdm, Keras's ``verbose=1``) only on a terminal or in a
notebook, and otherwise write one line per unit of work (an epoch, a model).
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile
from typing import TextIO

_LOG_PREFIX = re.compile(r"^[IWEF]\d{4} [\d:.]+\s+\d+ ")
"""The prefix of a C++ log line (level, date, time, thread id): what differs between repeats."""
ABSL_NOTE = "All log messages before absl::InitializeLog() is called are written to STDERR"


def interactive(stream: TextIO | None = None) -> bool:
    """True when ``stream`` (default: stderr) is a terminal, or the process is a Jupyter kernel."""
    stream = sys.stderr if stream is None else stream
    if "ipykernel" in sys.modules:
        return True
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


def keras_verbose(requested: int | None) -> int:
    """Keras's ``fit`` verbosity: ``requested``, or when None a bar (1) on a terminal and one line
    per epoch (2) otherwise."""
    if requested is not None:
        return requested
    return 1 if interactive(sys.stdout) else 2


class _QuietLoader(importlib.abc.Loader):
    """TensorFlow's own loader, run with its start-up lines deduplicated (``quiet_tensorflow``)."""

    def __init__(self, loader: importlib.abc.Loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        with _deduplicated_stderr():
            self._loader.exec_module(module)

    def __getattr__(self, name: str):
        return getattr(self._loader, name)


class _QuietFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def quiet_tensorflow() -> None:
    """Make the first ``import tensorflow`` of this process write its start-up lines once.

    Two of its shared libraries each print the same lines ("All log messages before
    absl::InitializeLog() ...", the oneDNN note) straight to file descriptor 2, whatever
    ``TF_CPP_MIN_LOG_LEVEL`` says, so a command's log shows them twice. Once this is called (it
    imports nothing), that import runs with descriptor 2 sent to a temporary file whose lines are
    then written to stderr without repeats (lines that differ only in their timestamp and thread
    are repeats), and without the informational ones when ``TF_CPP_MIN_LOG_LEVEL`` is 1 or more.
    """
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietFinder())


@contextlib.contextmanager
def _deduplicated_stderr():
    level = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0")  # the user's, before an import may set it
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            sys.stderr.write(_startup_lines(capture.read().decode(errors="replace"), level))
            sys.stderr.flush()


def _startup_lines(text: str, level: str) -> str:
    """``text`` without repeated lines, and without informational ones (and absl's note that
    precedes them) when ``level`` (``TF_CPP_MIN_LOG_LEVEL``) is 1 or more."""
    try:
        quiet = int(level) >= 1
    except ValueError:
        quiet = False
    seen, kept, dropping = set(), [], False
    for line in text.splitlines(keepends=True):
        if _LOG_PREFIX.match(line) or ABSL_NOTE in line:
            dropping = quiet and (line.startswith("I") or ABSL_NOTE in line)
        if dropping:  # an informational line, or the continuation of one
            continue
        key = _LOG_PREFIX.sub("", line)
        if key not in seen:
            seen.add(key)
            kept.append(line)
    return "".join(kept)
