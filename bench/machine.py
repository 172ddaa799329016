"""What the benchmark scripts print about the machine they ran on."""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import sys
import time
from pathlib import Path

QUIET_SECONDS = 0.1
"""How long the timing loops wait before each timed call, untimed, so that no call is timed while the
previous one's threads still run. ONNX Runtime's idle pool threads spin-wait after a run: on the
2-core Xeon (2026-11-22), torchvision's mobilenet-v3 SSD took 136 ms right after an ONNX Runtime call,
122 ms 10 ms after it and 71-79 ms 50-400 ms after it, against 68-73 ms after its own call
(scratch runs), which made ONNX Runtime's ratios look 1.6x better than they were. Only the benches that time
ONNX Runtime among their paths pause (``bench/inference_latency.py``, ``bench/inference_throughput.py``):
on this VM the first call after 0.1 s idle sometimes took about 11 ms more, whatever it was (a 5x5
convolution 11.9 ms against 0.3 ms straight after another call; in another scratch run 1.1 against 0.85),
which the pause adds to every timed call alike and which would swamp the per-layer checks."""


def quiet() -> None:
    """Wait :data:`QUIET_SECONDS` before a timed call."""
    time.sleep(QUIET_SECONDS)


def cpu_name() -> str:
    """The CPU model as /proc/cpuinfo names it (else what the platform module knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def add_malloc_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--glibc-malloc-defaults", action="store_true",
                        help="leave glibc's malloc thresholds as they are (default: raise them with "
                             "sagedet.allocator.tune_malloc, as the server's CPU workers and CPU training do)")


def set_malloc(args: argparse.Namespace) -> str:
    """Apply the malloc choice of :func:`add_malloc_option` to this process; what was done, for the output."""
    from sagedet.allocator import tune_malloc

    done = "glibc malloc defaults" if args.glibc_malloc_defaults else tune_malloc()
    return f"{done} (for every model in the run)"


def run_lines(malloc: str | None = None) -> list[str]:
    """Markdown lines naming the command as it was run, the machine (CPU only), the software and the date,
    and with ``malloc`` what :func:`set_malloc` did."""
    import torch

    interpreter = os.path.relpath(sys.executable) if sys.executable.startswith(os.getcwd()) else "python"
    return [
        f"- command: `{shlex.join([interpreter, *sys.argv])}`",
        f"- machine: {cpu_name()}, {os.cpu_count()} cores, CPU only; Python {platform.python_version()}, "
        f"torch {torch.__version__}" + (f"; {malloc}" if malloc else ""),
        f"- date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
    ]
