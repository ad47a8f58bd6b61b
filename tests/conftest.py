"""Test-wide settings (no model hub, quiet TensorFlow, headless plotting, children that exit without
a final garbage collection: ``site/sitecustomize.py``) and shared fixtures.

``harmonization`` is imported first, so triton loads before any test module imports TensorFlow
(docs/traps.md, "Import order"). The builders the fixtures use live in ``builders.py``.

Under pytest-xdist (``make test`` runs ``-n N --dist loadgroup``, N one more than the CPUs, at most
4) each worker is its own process, and it and the interpreters it starts take their share of the
cores, not all of them; ``parallel.py`` keeps the tests that share an expensive fixture on one worker.
"""

import os
import signal

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")
# The Ctrl-C tests need SIGINT to raise KeyboardInterrupt, as in a terminal. A shell that starts the
# suite in the background without job control ignores SIGINT, and every process would inherit that;
# a handler (unlike an ignored signal) is reset to the default in the interpreters the tests start.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
_SITE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "site")  # children skip exit's collection
if _SITE not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, (_SITE, os.environ.get("PYTHONPATH"))))

if os.environ.get("PYTEST_XDIST_WORKER"):  # before TensorFlow, JAX or torch load (children inherit)
    _CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    _THREADS = str(max(1, _CORES // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    for _name in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
        os.environ.setdefault(_name, _THREADS)
    if "XLA_FLAGS" not in os.environ:  # a test that sets its own XLA_FLAGS (device count) keeps them
        os.environ["XLA_FLAGS"] = (
            f"--xla_cpu_multi_thread_eigen={_THREADS != '1'} intra_op_parallelism_threads={_THREADS}"
        ).lower()

import harmonization  # noqa: E402,F401  (before TensorFlow)
import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

# CI (GitHub Actions sets CI=true) draws the same examples on every run, so a red build names a
# change in the code, not a new draw; elsewhere each run draws afresh. HYPOTHESIS_PROFILE overrides.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("dev")
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))

import builders  # noqa: E402
from parallel import (  # noqa: E402,F401  (the hooks that run the suite on every core)
    pytest_collection_modifyitems,
    pytest_configure,
    pytest_configure_node,
    pytest_unconfigure,
    pytest_xdist_make_scheduler,
    shared_folder,
)


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
