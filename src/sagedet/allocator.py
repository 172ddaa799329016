"""glibc's malloc set for PyTorch's large, short-lived CPU tensors.

PyTorch's CPU allocator takes every tensor from ``malloc`` and returns it on release. glibc serves
blocks above its mmap threshold (128 KiB at first, raised as such blocks are freed, up to 32 MiB)
with a fresh ``mmap`` and unmaps them on ``free``, and gives the top of its heap back to the system
once more than the trim threshold is free. A forward pass of an SSD allocates and frees tens of
tensors of 1-30 MB, so each call pays page faults and the kernel's zeroing of those pages again.
glibc adapts its thresholds to the sizes it sees, but its trim threshold stays at twice the largest
block freed from mmap, so a call holding three 20 MB tensors at once gives their 60 MB back at the
end and faults every page in again on the next call, in most processes (tests/test_allocator.py;
when it does not depends on the heap's layout). Raising both thresholds keeps the freed blocks in
the process for the next call: once the heap has grown, no page faults. On the development machine
(2-core AVX2; docs/benchmarks.md): a vgg-16 training step 3-6% faster; resnet-50's Winograd class
head 0.66x oneDNN's time instead of 1.47x; a server running one model no consistent difference
(glibc's adaptive threshold settles on the repeated sizes). The cost is that the process keeps its
peak memory instead of handing pages back between calls.

The thresholds are set at run time with ``mallopt``, the same settings as the environment's
``GLIBC_TUNABLES=glibc.malloc.mmap_threshold=...:glibc.malloc.trim_threshold=...``. Both must be
set: setting the trim threshold alone turns off glibc's raising of the mmap threshold, which leaves
every block above 128 KiB to ``mmap`` (vgg-16's winograd path was far slower so, in a scratch
check). A process whose environment already sets any of glibc's malloc tunables is left as it is
(the user's settings win).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Mapping

MMAP_THRESHOLD = 32 * 1024 * 1024
"""Blocks up to this size come from the heap (glibc's upper limit for the threshold on 64-bit)."""
TRIM_THRESHOLD = 1024 * 1024 * 1024
"""Free memory at the top of a heap kept for reuse, up to this much."""

_M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")


def user_has_settings(environ: Mapping[str, str]) -> bool:
    """Whether the environment sets glibc's malloc itself (GLIBC_TUNABLES glibc.malloc.*, MALLOC_*_)."""
    return "glibc.malloc." in environ.get("GLIBC_TUNABLES", "") or any(name in environ for name in _USER_SETTINGS)


def tune_malloc(environ: Mapping[str, str] | None = None) -> str:
    """Raise glibc's mmap and trim thresholds in this process (inherited by processes it forks).
    Returns what was done, for the log: the settings, or why nothing was changed."""
    environ = os.environ if environ is None else environ
    if user_has_settings(environ):
        return "glibc malloc as set in the environment"
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return "malloc unchanged (not glibc)"
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    if not (mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)):
        return "malloc unchanged (mallopt refused the thresholds)"
    return f"glibc malloc: mmap threshold {MMAP_THRESHOLD >> 20} MiB, trim threshold {TRIM_THRESHOLD >> 20} MiB"
