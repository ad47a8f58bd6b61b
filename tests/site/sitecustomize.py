"""Imported at start-up by every Python process the tests start (conftest.py puts this folder on
their PYTHONPATH): each one exits without the shutdown's garbage collection, as the console scripts
do (``harmonization.memory.skip_collection_at_exit``; what it saves: docs/traps.md, "Shutdown"). Standard library only: nothing is imported that the test checks.
A ``sitecustomize`` that this one shadows (an environment's own) still runs."""

import atexit
import gc
import importlib.machinery
import importlib.util
import os
import sys

atexit.register(gc.freeze)

_HERE = os.path.dirname(os.path.realpath(__file__))
_spec = importlib.machinery.PathFinder.find_spec(
    "sitecustomize", [entry for entry in sys.path if os.path.realpath(entry or os.curdir) != _HERE]
)
if _spec is not None and _spec.loader is not None:
    _shadowed = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_shadowed)
