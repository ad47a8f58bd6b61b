"""Running the suite on every core (pytest-xdist, ``--dist loadgroup``): which tests share a worker.

pytest-xdist 3.8 keeps an ``xdist_group`` on one worker by renaming its tests (``id@group``), which
pytest 9.2 ignores (docs/traps.md, "Test groups"). Here each worker writes its groups to a file
that the controller's scheduler reads. conftest.py imports the hooks, so pytest finds them there.

The run's scratch folder, shared by its workers and removed at the end, also holds one JAX
compilation cache: the interpreters the tests start on the JAX backend compile the same train steps
again and again, and with the cache each is compiled once per run.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import pytest


def groups(items) -> dict:
    """{node id: group}: a test's xdist_group mark, or else one group for the tests that share a
    module-scoped fixture of their module or a session-scoped one of conftest.py (directly or through
    another), so that the fixture is built on one worker only while the others run other tests.
    Other tests are not in the dict: they spread freely."""
    parent: dict = {}

    def root(key):
        while parent.setdefault(key, key) != key:
            key = parent[key]
        return key

    shared = {}
    for item in items:
        definitions = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
        names = [
            (item.module.__name__, name)
            for name, defs in definitions.items()
            if defs and defs[-1].scope in ("module", "class")
        ]
        names += [
            ("session", name)
            for name, defs in definitions.items()
            if defs and defs[-1].scope == "session" and defs[-1].func.__module__ == "conftest"
        ]
        for name in names[1:]:
            parent[root(name)] = root(names[0])
        shared[item.nodeid] = names
        if item.get_closest_marker("xdist_group"):
            shared[item.nodeid] = str(item.get_closest_marker("xdist_group").args[0])
    return {
        nodeid: names if isinstance(names, str) else "::".join(root(names[0]))
        for nodeid, names in shared.items()
        if names
    }


def pytest_configure(config):
    """(every process) This run's scratch folder: the controller's, or a new one; the interpreters
    that tests start (they inherit the environment) share its JAX compilation cache."""
    folder = getattr(config, "workerinput", {}).get("run_folder")
    if folder is None:  # the controller, or a run without workers
        folder = config.run_folder = tempfile.mkdtemp(prefix="pytest-run-")
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(folder, "jax-cache"))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")  # the small steps too


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """(controller) Give each worker the run's scratch folder, where it writes its groups."""
    node.workerinput["run_folder"] = node.config.run_folder


def pytest_collection_modifyitems(config, items):
    """(worker) Write {node id: group} for the controller's scheduler."""
    folder = getattr(config, "workerinput", {}).get("run_folder")
    if folder:
        path = os.path.join(folder, config.workerinput["workerid"] + ".json")
        with open(path + ".part", "w") as handle:
            json.dump(groups(items), handle)
        os.replace(path + ".part", path)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """(controller) --dist loadgroup: the groups the workers wrote, largest first."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            if not hasattr(self, "groups"):  # every worker collected the same tests: read one
                self.groups = {}
                for name in sorted(n for n in os.listdir(config.run_folder) if n.endswith(".json"))[:1]:
                    with open(os.path.join(config.run_folder, name)) as handle:
                        self.groups = json.load(handle)
            return self.groups.get(nodeid, nodeid)

    return GroupScheduling(config, log)


def pytest_unconfigure(config):
    if hasattr(config, "run_folder"):
        shutil.rmtree(config.run_folder, ignore_errors=True)


def shared_folder(tmp_path_factory, name: str, write) -> os.PathLike:
    """``write(folder)`` once per run: serially into a fresh folder; under xdist into one folder
    every worker shares, written by the first worker that asks while the others wait for it."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return write(tmp_path_factory.mktemp(name))
    from filelock import FileLock

    run = tmp_path_factory.getbasetemp().parent  # this run's base folder, above each worker's
    folder, done = run / name, run / f"{name}.done"
    with FileLock(str(run / f"{name}.lock")):
        if not done.is_file():
            if folder.exists():  # a worker that failed half-way
                shutil.rmtree(folder)
            folder.mkdir()
            write(folder)
            done.touch()
    return folder
