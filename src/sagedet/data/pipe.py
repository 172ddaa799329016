"""Pipe mode: a channel arrives as FIFOs ``/opt/ml/input/data/<channel>_<epoch>`` (``train_0``,
``train_1``, …), one per pass over the data, each read once to its end, in order. The next one may
appear late: it is waited for (up to ``SAGEDET_PIPE_TIMEOUT`` seconds, default 600).

A :class:`PipeStream` yields the raw samples of one pass, parsing records as they arrive (never
the whole data set in memory); decoding happens later, in the DataLoader workers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from ..errors import DataError
from .sample import RawSample

PIPE_TIMEOUT_ENV = "SAGEDET_PIPE_TIMEOUT"
DEFAULT_PIPE_TIMEOUT = 600.0
READ_BUFFER = 1 << 20


def pipe_path(channel_path: Path, epoch: int) -> Path:
    return Path(f"{channel_path}_{epoch}")


def pipe_timeout() -> float:
    raw = os.environ.get(PIPE_TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_PIPE_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise DataError(f"{PIPE_TIMEOUT_ENV}={raw!r}: expected a number of seconds > 0")
    return value


def open_pipe(path: Path, timeout: float, poll: float = 0.1) -> BinaryIO:
    """Open the FIFO (or file) at ``path`` for reading, waiting for it to appear."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise DataError(f"Pipe mode: {path} did not appear within {timeout:g} s (set {PIPE_TIMEOUT_ENV} "
                            "to wait longer); is the channel's TrainingInputMode really Pipe?")
        time.sleep(poll)
    return open(path, "rb", buffering=READ_BUFFER)


class PipeStream:
    """One Pipe-mode channel: ``samples(n)`` reads the n-th FIFO of the job (n counts the passes this
    process has made, from 0) with ``parse`` (stream, name) → raw samples. ``class_names`` is the dict
    that ``parse`` fills as it reads (an augmented manifest's metadata ``class-map``): complete once a
    pass has been read."""

    def __init__(self, channel_path: Path, channel: str, parse: Callable[[BinaryIO, str], Iterator[RawSample]],
                 timeout: float | None = None, class_names: dict[int, str] | None = None) -> None:
        self.channel_path = Path(channel_path)
        self.channel = channel
        self.parse = parse
        self.timeout = pipe_timeout() if timeout is None else timeout
        self.class_names: dict[int, str] = {} if class_names is None else class_names

    def samples(self, epoch: int) -> Iterator[RawSample]:
        """The samples of pass ``epoch``; a FIFO that ends before its first record is an error (an epoch
        would train on nothing)."""
        path = pipe_path(self.channel_path, epoch)
        name = f"{self.channel}_{epoch}"
        count = 0
        with open_pipe(path, self.timeout) as stream:
            for sample in self.parse(stream, name):
                count += 1
                yield sample
        if not count:
            raise DataError(f"{name}: the FIFO held no records ({path} ended before its first record); in Pipe mode "
                            f"SageMaker streams the whole {self.channel} channel once per epoch: is its S3 data (or "
                            "its manifest) empty, or, with ShardedByS3Key, is this host's share empty?")
