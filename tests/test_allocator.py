"""sagedet.allocator: glibc's malloc keeps freed tensor memory for the next call instead of unmapping it.

Measured with the kernel's count of minor page faults: each page a process touches for the first
time after mapping it costs one. Every case runs in a fresh interpreter, because mallopt cannot be
undone inside a process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sagedet.allocator import tune_malloc, user_has_settings

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc")

# A call that holds three 20 MB tensors at once and then frees them, as a forward pass holds its
# transformed tiles, products and outputs. With glibc's defaults the trim threshold becomes twice the
# largest block freed from mmap (40 MB), so the 60 MB freed at the top of the heap is usually given
# back to the system and every page is faulted in again on the next call (whether it is depends on
# the heap's layout, which differs between processes: in most, not all). With sagedet's setting the
# trim threshold is 1 GiB and, once the heap has grown, no call faults.
FAULTS_PER_CALL = """
import resource, sys, torch
from sagedet.allocator import tune_malloc
if sys.argv[1] == "tuned":
    print(tune_malloc())
def call():
    live = [torch.ones(5_000_000) for _ in range(3)]
    return sum(float(t[-1]) for t in live)
for _ in range(30):
    call()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    call()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
"""
PAGES = 3 * 20_000_000 // 4096


def faults_per_call(mode: str) -> tuple[float, str]:
    environ = {name: value for name, value in os.environ.items()
               if not name.startswith("MALLOC_") and name != "GLIBC_TUNABLES"}
    result = subprocess.run([sys.executable, "-c", FAULTS_PER_CALL, mode], capture_output=True, text=True,
                            env=environ, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")
    return float(lines[-2]), lines[0]


def test_with_the_setting_freed_tensors_are_reused_without_page_faults():
    for _ in range(3):  # three processes, three heap layouts
        faults, said = faults_per_call("tuned")
        assert said == "glibc malloc: mmap threshold 32 MiB, trim threshold 1024 MiB"
        assert faults == 0


def test_with_glibc_defaults_the_same_calls_fault_their_pages_again():
    # what the setting prevents, so the test above can tell it from glibc's defaults: in most processes
    # every call faults in most of its 60 MB again (in most processes on the development machine; up to
    # 10 are tried)
    seen = []
    for _ in range(10):
        seen.append(faults_per_call("default")[0])
        if seen[-1] > PAGES / 2:
            return
    pytest.fail(f"glibc's defaults did not fault in 10 processes: {seen}")


@pytest.mark.parametrize("environ", [
    {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"},
    {"GLIBC_TUNABLES": "glibc.rtld.optional_static_tls=1:glibc.malloc.arena_max=2"},
    {"MALLOC_MMAP_THRESHOLD_": "65536"},
    {"MALLOC_TRIM_THRESHOLD_": "0"},
])
def test_the_users_own_malloc_settings_are_left_alone(environ):
    assert user_has_settings(environ)
    assert tune_malloc(environ) == "glibc malloc as set in the environment"


def test_other_settings_do_not_count_as_malloc_settings():
    assert not user_has_settings({"GLIBC_TUNABLES": "glibc.rtld.optional_static_tls=1", "PATH": "/usr/bin"})
