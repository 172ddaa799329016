"""Request batching: concurrent requests' images go through the model together.

The first image to arrive opens a batch; the batch closes when it holds ``max_size`` images or
``max_delay`` seconds after it opened, whichever comes first, and one thread runs it. Each request
waits for its own image's result, so a batch never mixes answers: the runner returns one result per
image, in order. With one image a batch is what an unbatched call would do.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Generic, TypeVar

from sagedet.serve.errors import ServiceUnavailable

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass
class BatchStats:
    batches: int = 0
    images: int = 0
    largest: int = 0


class Batcher(Generic[Item, Result]):
    def __init__(self, run: Callable[[Sequence[Item]], Sequence[Result]], max_size: int, max_delay: float,
                 name: str = "sagedet-batcher"):
        if max_size < 1 or max_delay < 0:
            raise ValueError("max_size must be >= 1 and max_delay >= 0")
        self._run = run
        self.max_size = max_size
        self.max_delay = max_delay
        self.stats = BatchStats()
        self._queue: queue.Queue[tuple[Item, Future] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: Item, deadline: float) -> Result:
        """Run ``item`` in the next batch; wait for its result until ``deadline`` (time.monotonic)."""
        future: Future = Future()
        self._queue.put((item, future))
        try:
            return future.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            future.cancel()  # not yet taken into a batch: dropped; already running: its result is dropped
            raise ServiceUnavailable("the worker is busy: the model could not run the image within "
                                     "SAGEMAKER_MODEL_SERVER_TIMEOUT; retry later") from None

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _collect(self, first: tuple[Item, Future]) -> tuple[list[tuple[Item, Future]], bool]:
        batch, closing = [first], False
        closes_at = time.monotonic() + self.max_delay
        while len(batch) < self.max_size:
            try:
                entry = self._queue.get(timeout=max(0.0, closes_at - time.monotonic()))
            except queue.Empty:
                break
            if entry is None:
                closing = True
                break
            batch.append(entry)
        return batch, closing

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, closing = self._collect(first)
            live = [(item, future) for item, future in batch if future.set_running_or_notify_cancel()]
            if live:
                self._execute(live)
            if closing:
                return

    def _execute(self, batch: list[tuple[Item, Future]]) -> None:
        try:
            results = self._run([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"the batch runner returned {len(results)} results for {len(batch)} images")
        except Exception as error:  # noqa: BLE001 - every waiting request gets the failure; the thread lives on
            for _, future in batch:
                future.set_exception(error)
            return
        self.stats.batches += 1
        self.stats.images += len(batch)
        self.stats.largest = max(self.stats.largest, len(batch))
        for (_, future), result in zip(batch, results):
            future.set_result(result)
