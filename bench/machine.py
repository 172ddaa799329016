"""What the benchmark scripts print about the machine they ran on."""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import sys
from pathlib import Path


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
