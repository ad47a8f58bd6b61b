"""Test-wide settings (no model hub, quiet TensorFlow, headless plotting) and shared fixtures.

``harmonization`` is imported first, so triton loads before any test module imports TensorFlow
(docs/traps.md, "Import order"). The builders the fixtures use live in ``builders.py``.

Under pytest-xdist (``make test`` runs ``-n auto --dist loadgroup``) each worker is its own
process: the tests that share a module-scoped fixture run on one worker (so it is built once),
the session fixtures are written once per run for every worker (under a file lock), and each
worker and the interpreters it starts take their share of the cores, not all of them.
"""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

if os.environ.get("PYTEST_XDIST_WORKER"):  # before TensorFlow, JAX or torch load (children inherit)
    _CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    _THREADS = str(max(1, _CORES // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    for _name in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
        os.environ.setdefault(_name, _THREADS)
    if "XLA_FLAGS" not in os.environ:  # a test that sets its own XLA_FLAGS (device count) keeps them
        os.environ["XLA_FLAGS"] = (f"--xla_cpu_multi_thread_eigen={_THREADS != '1'} "
                                   f"intra_op_parallelism_threads={_THREADS}").lower()

import harmonization  # noqa: E402,F401  (before TensorFlow)
import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

# CI (GitHub Actions sets CI=true) draws the same examples on every run, so a red build names a
# change in the code, not a new draw; elsewhere each run draws afresh. HYPOTHESIS_PROFILE overrides.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("dev")
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))

import builders  # noqa: E402


def groups(items) -> dict:
    """{node id: group}: a test's xdist_group mark, or else one group for the tests that share a
    module-scoped fixture of their module or a session-scoped one of this file (directly or through
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
        names = [(item.module.__name__, name) for name, defs in definitions.items()
                 if defs and defs[-1].scope in ("module", "class")]
        names += [("session", name) for name, defs in definitions.items()
                  if defs and defs[-1].scope == "session" and defs[-1].func.__module__ == __name__]
        for name in names[1:]:
            parent[root(name)] = root(names[0])
        shared[item.nodeid] = names
        if item.get_closest_marker("xdist_group"):
            shared[item.nodeid] = str(item.get_closest_marker("xdist_group").args[0])
    return {nodeid: names if isinstance(names, str) else "::".join(root(names[0]))
            for nodeid, names in shared.items() if names}


# pytest-xdist 3.8's --dist loadgroup marks a group by renaming the test, which pytest 9.2 ignores;
# here each worker writes its groups to a folder that the controller's scheduler then reads.

@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """(controller) Tell each worker where to write its groups."""
    import tempfile

    config = node.config
    if not hasattr(config, "test_groups"):
        config.test_groups = tempfile.mkdtemp(prefix="pytest-groups-")
    node.workerinput["test_groups"] = config.test_groups


def pytest_collection_modifyitems(config, items):
    """(worker) Write {node id: group} for the controller's scheduler."""
    folder = getattr(config, "workerinput", {}).get("test_groups")
    if folder:
        import json

        path = os.path.join(folder, config.workerinput["workerid"] + ".json")
        with open(path + ".part", "w") as handle:
            json.dump(groups(items), handle)
        os.replace(path + ".part", path)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """(controller) --dist loadgroup: the groups the workers wrote, largest first."""
    if config.getvalue("dist") != "loadgroup":
        return None
    import json

    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            if not hasattr(self, "groups"):
                (name, *_) = sorted(os.listdir(config.test_groups))
                with open(os.path.join(config.test_groups, name)) as handle:
                    self.groups = json.load(handle)
            return self.groups.get(nodeid, nodeid)

    return GroupScheduling(config, log)


def pytest_unconfigure(config):
    if hasattr(config, "test_groups"):
        import shutil

        shutil.rmtree(config.test_groups, ignore_errors=True)


def shared_folder(tmp_path_factory, name: str, write) -> "os.PathLike":
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
                import shutil

                shutil.rmtree(folder)
            folder.mkdir()
            write(folder)
            done.touch()
    return folder


@pytest.fixture
def cnn():
    """The tiny CNN trained on synthetic 32 px images (the same object for the whole session)."""
    return builders.trained_cnn()


@pytest.fixture
def test_batch():
    """12 held-out images and labels (a different seed from the training set)."""
    return builders.synthetic_images(12, seed=7)


@pytest.fixture(scope="session")
def published_files(tmp_path_factory):
    """Files in every published full-model / ViT format, written once per session by the reference
    constructors (tests/reference/write_published.py): see ``builders.write_published_files``."""
    return shared_folder(tmp_path_factory, "published", builders.write_published_files)


@pytest.fixture(scope="session")
def kecam_files(tmp_path_factory):
    """kecam-written reduced-depth ConvNeXt-Tiny, LeViT-128 and MaxViT-Tiny files, once per session."""
    return shared_folder(tmp_path_factory, "kecam", builders.write_kecam_files)
