"""What the benchmark scripts print about the machine they ran on."""

from __future__ import annotations

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


def run_lines() -> list[str]:
    """Markdown lines naming the command as it was run, the machine (CPU only), the software and the date."""
    import torch

    interpreter = os.path.relpath(sys.executable) if sys.executable.startswith(os.getcwd()) else "python"
    return [
        f"- command: `{shlex.join([interpreter, *sys.argv])}`",
        f"- machine: {cpu_name()}, {os.cpu_count()} cores, CPU only; Python {platform.python_version()}, "
        f"torch {torch.__version__}",
        f"- date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
    ]
