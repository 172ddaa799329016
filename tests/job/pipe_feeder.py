"""SageMaker's side of Pipe mode, for tests: FIFOs ``<channel>_<n>`` created one pass after another and
written to their end by a thread."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path


class PipeFeeder:
    """SageMaker's side of Pipe mode for some channels: FIFO ``<channel>_<n>`` is created once
    ``<channel>_<n-1>`` has been written to the end (after ``delay`` seconds), for ``passes`` passes."""

    def __init__(self, data_dir: Path, channels: dict[str, bytes], passes: int, delay: float = 0.5):
        self.errors: list[str] = []
        self.opened: dict[str, int] = {}
        self.threads = [threading.Thread(target=self._feed, args=(data_dir, name, payload, passes, delay), daemon=True)
                        for name, payload in channels.items()]

    def __enter__(self) -> "PipeFeeder":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        for thread in self.threads:
            thread.join(timeout=5)

    def _feed(self, data_dir: Path, name: str, payload: bytes, passes: int, delay: float) -> None:
        for n in range(passes):
            time.sleep(delay)  # the next FIFO appears late
            fifo = data_dir / f"{name}_{n}"
            os.mkfifo(fifo)
            try:
                fd = _open_for_writing(fifo, timeout=240)
            except TimeoutError:
                return  # nobody read this pass (training ended): SageMaker would stop here too
            self.opened[name] = n + 1
            with os.fdopen(fd, "wb") as pipe:
                try:
                    for start in range(0, len(payload), 65536):  # chunks, as a stream arrives
                        pipe.write(payload[start:start + 65536])
                except BrokenPipeError:
                    self.errors.append(f"{fifo}: the reader closed the FIFO before its end")
                    return


def _open_for_writing(fifo: Path, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # ENXIO: no reader yet
            if time.monotonic() > deadline:
                raise TimeoutError(fifo) from None
            time.sleep(0.05)
