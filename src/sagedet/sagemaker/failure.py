"""SageMaker's failure contract: a reason in /opt/ml/output/failure and a non-zero exit.

SageMaker shows the file's first 1024 characters as the job's FailureReason, so the reason leads
and any detail (a traceback) follows. Exit codes: 0 completed, 1 a :class:`SagedetError` (the
user's input or environment, explained in its message), 2 an internal error (a bug: its
traceback is reported), 130 interrupted.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Callable

from sagedet.errors import SagedetError
from sagedet.sagemaker.paths import SageMakerPaths


def write_failure(paths: SageMakerPaths, reason: str, failure_file: Path | None = None) -> None:
    """Write the full reason to the failure file (or ``failure_file``), creating its folder."""
    target = failure_file or paths.failure_file
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(reason, encoding="utf-8")


def clear_failure(paths: SageMakerPaths) -> None:
    """Remove a failure file left by an earlier run (call at job start)."""
    paths.failure_file.unlink(missing_ok=True)


def _report(paths: SageMakerPaths, reason: str, failure_file: Path | None) -> None:
    print(reason, file=sys.stderr, flush=True)
    try:
        write_failure(paths, reason, failure_file)
    except OSError as error:
        print(f"cannot write {failure_file or paths.failure_file}: {error}", file=sys.stderr, flush=True)


def run_with_failure_file(paths: SageMakerPaths, fn: Callable[[], int | None], failure_file: Path | None = None) -> int:
    """Run ``fn()`` and return the process exit code, reporting a failure as SageMaker expects
    (in ``failure_file`` instead of /opt/ml/output/failure: a training process's report to its
    launcher)."""
    try:
        code = fn()
    except KeyboardInterrupt:
        _report(paths, "Interrupted", failure_file)
        return 130
    except SagedetError as error:
        _report(paths, str(error) or type(error).__name__, failure_file)
        return 1
    except Exception as error:
        message = f"Internal error: {type(error).__name__}: {error}"
        _report(paths, f"{message}\n\n{traceback.format_exc()}", failure_file)
        return 2
    return 0 if code is None else int(code)
