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

# Two Winograd layers on 128 channels at 150x150, as vgg-16's conv2_2: each call allocates and
# frees tensors of 10-30 MB (the transformed tiles, the products, the outputs).
FAULTS_PER_CALL = """
import resource, sys, torch
from torch import nn
from sagedet.allocator import tune_malloc
from sagedet.model.winograd import convert
if sys.argv[1] == "tuned":
    print(tune_malloc())
model = nn.Sequential(convert(nn.Conv2d(128, 128, 3, padding=1)), nn.ReLU(),
                      convert(nn.Conv2d(128, 128, 3, padding=1))).eval()
x = torch.rand(1, 128, 150, 150)
with torch.inference_mode():
    for _ in range(2):
        model(x)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(4):
        model(x)
    print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 4)
"""


def faults_per_call(mode: str) -> tuple[float, str]:
    environ = {name: value for name, value in os.environ.items()
               if not name.startswith("MALLOC_") and name != "GLIBC_TUNABLES"}
    result = subprocess.run([sys.executable, "-c", FAULTS_PER_CALL, mode], capture_output=True, text=True,
                            env=environ, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")
    return float(lines[-2]), lines[0]


def test_tuned_malloc_reuses_freed_tensors_where_glibc_defaults_fault_every_call():
    default, _ = faults_per_call("default")
    tuned, said = faults_per_call("tuned")
    assert said == "glibc malloc: mmap threshold 32 MiB, trim threshold 1024 MiB"
    # 26 MB of transformed tiles alone are 6,500 pages; glibc's defaults unmap some of them each call
    assert default > 500, default
    assert tuned < 50, tuned


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
