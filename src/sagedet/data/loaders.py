"""Batches for training and validation, from a random-access source (File mode) or a stream (Pipe
mode), decoded and transformed in DataLoader workers either way.

- A :class:`~sagedet.data.sample.SampleSource` is a map-style dataset: shuffled each epoch for
  training; the last partial batch dropped unless it would be the only one.
- A :class:`SampleStream` yields the raw samples of pass ``n`` (``samples(n)``). Its records are read
  in the main process by the batch sampler (:class:`StreamBatches`), which hands each batch of raw
  samples to the workers through the DataLoader's index queue, so that only the batches in flight
  are in memory; for training they pass through a bounded shuffle buffer first.

With several training processes each reads its :class:`Shard`: a distinct part of the source
(training: a DistributedSampler, reshuffled each epoch by ``set_epoch``; validation: every
``count``-th sample, no padding, so that each sample is evaluated once), or every ``count``-th record
of a stream.
"""

from __future__ import annotations

import itertools
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable, Iterator
from typing import Protocol, Union

from torch.utils.data import DataLoader, DistributedSampler, Sampler, Subset

from .dataset import DetectionDataset, collate
from .sample import RawSample, SampleSource

SHUFFLE_BUFFER = 512
"""Raw samples a stream's shuffle buffer holds (encoded images: ~50 MB for 100 kB JPEGs)."""


class SampleStream(Protocol):
    """A channel read once per pass, in order (Pipe mode)."""

    class_names: dict[int, str]

    def samples(self, epoch: int) -> Iterator[RawSample]: ...


TrainingData = Union[SampleSource, SampleStream]


@dataclass(frozen=True)
class Shard:
    """Part ``index`` of ``count`` equal parts of a channel's data."""

    index: int = 0
    count: int = 1


WHOLE = Shard()


class ShardedStream:
    """Every ``shard.count``-th sample of a stream, from the ``shard.index``-th on."""

    def __init__(self, stream: SampleStream, shard: Shard) -> None:
        self.stream = stream
        self.shard = shard
        self.class_names = stream.class_names

    def samples(self, epoch: int) -> Iterator[RawSample]:
        return itertools.islice(self.stream.samples(epoch), self.shard.index, None, self.shard.count)


def is_stream(data: TrainingData) -> bool:
    return hasattr(data, "samples")


def shuffled(samples: Iterator[RawSample], size: int, rng: random.Random) -> Iterator[RawSample]:
    """``samples`` in a random order drawn from a buffer of at most ``size`` of them."""
    buffer: list[RawSample] = []
    for sample in samples:
        if len(buffer) < size:
            buffer.append(sample)
            continue
        slot = rng.randrange(size)
        yield buffer[slot]
        buffer[slot] = sample
    rng.shuffle(buffer)
    yield from buffer


class StreamBatches(Sampler):
    """Batches of raw samples from a stream; each iteration reads the stream's next pass.

    With ``training``: shuffled through a buffer, and a last partial batch is dropped unless the pass
    had no full batch.
    """

    def __init__(self, stream: SampleStream, batch_size: int, training: bool, seed: int = 0,
                 shuffle_buffer: int = SHUFFLE_BUFFER) -> None:
        self.stream = stream
        self.batch_size = batch_size
        self.training = training
        self.seed = seed
        self.shuffle_buffer = shuffle_buffer
        self.passes = 0

    def __iter__(self) -> Iterator[list[RawSample]]:
        epoch = self.passes
        self.passes += 1
        samples = self.stream.samples(epoch)
        if self.training and self.shuffle_buffer > 1:
            samples = shuffled(samples, self.shuffle_buffer, random.Random(self.seed * 100_003 + epoch))
        batch: list[RawSample] = []
        full = 0
        for sample in samples:
            batch.append(sample)
            if len(batch) == self.batch_size:
                yield batch
                batch, full = [], full + 1
        if batch and not (self.training and full):
            yield batch


SHARED_MEMORY = Path("/dev/shm")
PREFETCH_FACTOR = 2
"""The batches each of :func:`build_loader`'s workers keeps ready (DataLoader's default)."""


def shared_memory_free(folder: Path = SHARED_MEMORY) -> int | None:
    """Free bytes in Linux's shared memory (None where there is no such folder)."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def workers_that_fit(workers: int, batch_bytes: int, free: int | None, processes: int = 1) -> int:
    """How many of ``workers`` DataLoader workers per training process ``free`` bytes of shared memory
    can take. Each batch crosses from its worker to the training process through /dev/shm:
    PREFETCH_FACTOR batches in flight per worker and two held by the training process, for each of
    ``processes`` training processes on the host. Past its size the workers fail to allocate and the
    job stalls; Docker gives a container 64 MB unless told otherwise (``docker run --shm-size``)."""
    if free is None:
        return workers
    return max(0, min(workers, (free // processes // batch_bytes - 2) // PREFETCH_FACTOR))


def build_loader(data: TrainingData, transform: Callable, batch_size: int, *, training: bool, workers: int,
                 pin_memory: bool, seed: int = 0, shard: Shard = WHOLE) -> DataLoader:
    """A DataLoader of :class:`~sagedet.data.dataset.Batch` (or SampleError, see ``check_batch``).

    A training loader over a sharded source has a ``sampler`` with ``set_epoch``: call it each epoch."""
    options = dict(num_workers=workers, collate_fn=collate, pin_memory=pin_memory, persistent_workers=workers > 0,
                   prefetch_factor=PREFETCH_FACTOR if workers > 0 else None)  # what workers_that_fit counts on
    if is_stream(data):
        stream = ShardedStream(data, shard) if shard.count > 1 else data
        return DataLoader(DetectionDataset(None, transform),
                          batch_sampler=StreamBatches(stream, batch_size, training, seed), **options)
    dataset = DetectionDataset(data, transform)
    if shard.count == 1:
        return DataLoader(dataset, batch_size=batch_size, shuffle=training,
                          drop_last=training and len(dataset) > batch_size, **options)
    if not training:
        return DataLoader(Subset(dataset, range(shard.index, len(dataset), shard.count)), batch_size=batch_size,
                          **options)
    sampler = DistributedSampler(dataset, num_replicas=shard.count, rank=shard.index, shuffle=True, seed=seed)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=len(sampler) > batch_size, **options)
