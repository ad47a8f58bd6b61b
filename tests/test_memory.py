import platform
import subprocess
import sys

import pytest

FAULTS_ON_REUSE = """
import resource, sys
import numpy as np
if sys.argv[1] == "tuned":
    from harmonization.memory import retain_freed_memory
    assert retain_freed_memory()
np.ones(64 << 20, dtype=np.uint8).sum()  # 64 MiB: above glibc's default mmap threshold
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
np.ones(64 << 20, dtype=np.uint8).sum()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults_on_reuse(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", FAULTS_ON_REUSE, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="a glibc malloc setting")
def test_freed_memory_is_reused_without_page_faults():
    default = _faults_on_reuse("default")
    assert default >= 32  # glibc unmapped the freed array: each page (even a 2 MiB huge page) faults again
    assert _faults_on_reuse("tuned") <= default // 10


def test_importing_attacks_torch_tunes_malloc_and_spearman_is_unchanged():
    code = ("import attacks_torch, numpy as np; from harmonization import memory, metrics; "
            "assert memory.retain_freed_memory.cache_info().currsize == 1; "
            "print(metrics.spearman(np.arange(6.0)[None], np.arange(6.0)[None] ** 2)[0])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert float(out.stdout.split()[-1]) == pytest.approx(1.0)
