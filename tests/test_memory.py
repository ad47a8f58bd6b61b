"""Memory tuning: freed memory is reused without page faults, Spearman's numbers do not move, and a
console script exits without the shutdown's garbage collection."""

import platform
import subprocess
import sys

import pytest
from builders import run_python, write_random_label_shards

FAULTS_ON_REUSE = """
import resource, sys
import numpy as np
if sys.argv[1] == "tuned":
    from harmonization.memory import retain_freed_memory
    assert retain_freed_memory()
elif sys.argv[1] == "attacks_torch":
    import attacks_torch  # the import alone must tune malloc
np.ones(64 << 20, dtype=np.uint8).sum()  # 64 MiB: above glibc's default mmap threshold
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
np.ones(64 << 20, dtype=np.uint8).sum()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="a glibc malloc setting")


def _faults_on_reuse(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", FAULTS_ON_REUSE, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


@glibc_only
def test_freed_memory_is_reused_without_page_faults():
    default = _faults_on_reuse("default")
    assert default >= 32  # glibc unmapped the freed array: each page (even a 2 MiB huge page) faults again
    assert _faults_on_reuse("tuned") <= default // 10


@glibc_only
def test_importing_attacks_torch_alone_reuses_freed_memory():
    assert _faults_on_reuse("attacks_torch") <= _faults_on_reuse("default") // 10


SPEARMAN_TUNED = """
import attacks_torch, json, numpy as np
from scipy import stats
from harmonization import metrics
rng = np.random.default_rng(5)
a = rng.integers(0, 6, (3, 200_000)).astype(np.float32)  # many ties, in a process tuned by the import
b = np.sin(a * 1.7) + rng.normal(0, 0.5, a.shape)         # a non-monotone, noisy relation
ours = metrics.spearman(a, b)
print(json.dumps({"ours": ours.tolist(),
                  "scipy": [float(stats.spearmanr(x, y).statistic) for x, y in zip(a, b)]}))
"""


def test_spearman_in_a_tuned_process_matches_scipy_with_ties():
    import json

    out = subprocess.run([sys.executable, "-c", SPEARMAN_TUNED], capture_output=True, text=True, check=True)
    values = json.loads(out.stdout.strip().splitlines()[-1])
    assert all(abs(v) > 0.05 for v in values["scipy"])  # a correlation to get right, not 0 or 1
    assert values["ours"] == pytest.approx(values["scipy"], abs=1e-8)


AFTER_TF_DATA = """
import resource, sys
import numpy as np
import attacks_torch, torch
from harmonization.data import load_clickme
from attacks_torch.search import find_minimal

def faults_on_reuse():
    np.ones(64 << 20, dtype=np.uint8).sum()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    np.ones(64 << 20, dtype=np.uint8).sum()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

tuned = faults_on_reuse()
for _ in load_clickme(sys.argv[1], "train", batch_size=4, image_size=32, num_classes=4, seed=0):
    pass
reset = faults_on_reuse()
model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2))
find_minimal(model, torch.rand(1, 3, 2, 2), torch.tensor([0]), "l2_pgd")
print(tuned, reset, faults_on_reuse())
"""


@glibc_only
def test_an_attack_takes_the_memory_setting_back_after_tensorflow_resets_it(tmp_path):
    # TensorFlow sets glibc's mmap threshold back to 128 KiB when it builds a from_generator
    # kernel (load_clickme's training reader); every attack step would then fault its buffers in
    # again (efficientnet-lite0: 3x the CPU time in the test suite's workers)
    out = run_python(AFTER_TF_DATA, args=(write_random_label_shards(tmp_path / "data", n=8),))
    assert out.returncode == 0, out.stderr[-3000:]
    tuned, reset, retuned = map(int, out.stdout.split()[-3:])
    assert reset >= 32 and reset >= 10 * max(tuned, 1), (tuned, reset)  # TensorFlow's reset: see docs/traps.md
    assert retuned <= reset // 10, (tuned, reset, retuned)


EXIT_COLLECTION = """
import atexit, gc, sys
atexit.register(lambda: print("frozen at exit:", gc.get_freeze_count()))  # runs after the command's own
from harmonization.extras import {script}
sys.exit({script}(["--help"]))
"""


@pytest.mark.parametrize("script", ["harmonize", "adv_align"])
def test_a_console_script_exits_without_collecting_its_objects(script):
    # gc.freeze at exit takes every object alive then out of the shutdown's collections (seconds of a
    # command that loaded TensorFlow, torch or JAX: docs/traps.md, "Shutdown")
    out = run_python(EXIT_COLLECTION.format(script=script))
    assert out.returncode == 0, out.stderr[-3000:]
    assert int(out.stdout.split()[-1]) > 10_000, out.stdout[-500:]
