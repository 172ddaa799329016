"""Pipe-mode FIFOs and streamed batches (sagedet.data.pipe, sagedet.data.loaders)."""

from __future__ import annotations

import io
import os
import random
import threading
import time
from functools import partial

import numpy as np
import pytest
import torch

from sagedet.data import manifest, recordio_source
from sagedet.data.dataset import Batch
from sagedet.data.loaders import StreamBatches, build_loader, shared_memory_free, shuffled, workers_that_fit
from sagedet.data.pipe import PipeStream, open_pipe, pipe_timeout
from sagedet.data.sample import Objects, RawSample
from sagedet.data.transforms import eval_transform
from sagedet.errors import DataError
from PIL import Image


def raw(i: int) -> RawSample:
    out = io.BytesIO()
    Image.new("RGB", (40, 30), (i, 0, 0)).save(out, "PNG")
    return RawSample(f"s{i}", out.getvalue(), Objects(np.array([[0.1, 0.1, 0.5, 0.5]], np.float32), np.array([i % 3])))


class ListStream:
    def __init__(self, count: int):
        self.count = count
        self.class_names = {}
        self.passes: list[int] = []

    def samples(self, epoch):
        self.passes.append(epoch)
        return (raw(i) for i in range(self.count))


def test_shuffled_keeps_every_sample_once_and_changes_the_order():
    items = list(range(100))
    out = list(shuffled(iter(items), 10, random.Random(0)))
    assert sorted(out) == items and out != items


def test_stream_batches_read_the_next_pass_each_time_and_drop_a_last_partial_training_batch():
    stream = ListStream(10)
    sampler = StreamBatches(stream, 4, training=True, seed=1)
    first = [[s.name for s in batch] for batch in sampler]
    second = [[s.name for s in batch] for batch in sampler]
    assert stream.passes == [0, 1]
    assert [len(b) for b in first] == [4, 4] and [len(b) for b in second] == [4, 4]
    assert first != second  # reshuffled each pass
    validation = StreamBatches(ListStream(10), 4, training=False)
    assert [[s.name for s in batch] for batch in validation] == [["s0", "s1", "s2", "s3"], ["s4", "s5", "s6", "s7"],
                                                                 ["s8", "s9"]]


def test_a_pass_smaller_than_a_batch_still_trains():
    assert [len(b) for b in StreamBatches(ListStream(3), 8, training=True)] == [3]


def test_a_stream_loader_decodes_in_workers():
    loader = build_loader(ListStream(6), eval_transform(32), 4, training=False, workers=2, pin_memory=False)
    batches = list(loader)
    assert all(isinstance(b, Batch) for b in batches)
    assert [b.names for b in batches] == [["s0", "s1", "s2", "s3"], ["s4", "s5"]]
    assert batches[0].images.shape == (4, 3, 32, 32)
    assert torch.equal(batches[1].labels[:, 0], torch.tensor([1, 2]))


def test_open_pipe_waits_for_a_late_fifo(tmp_path):
    fifo = tmp_path / "train_0"

    def sagemaker():
        time.sleep(0.4)
        os.mkfifo(fifo)
        with open(fifo, "wb") as pipe:
            pipe.write(b"hello")

    writer = threading.Thread(target=sagemaker)
    writer.start()
    began = time.monotonic()
    with open_pipe(fifo, timeout=10) as stream:
        assert stream.read() == b"hello"
    writer.join()
    assert time.monotonic() - began >= 0.3


def test_a_fifo_that_never_comes_is_named(tmp_path):
    with pytest.raises(DataError, match=r"Pipe mode: .*/validation_3 did not appear within 0.2 s"):
        open_pipe(tmp_path / "validation_3", timeout=0.2)


def test_pipe_stream_reads_channel_underscore_epoch(tmp_path):
    for n in range(2):
        (tmp_path / f"train_{n}").write_bytes(f"pass {n}".encode())
    stream = PipeStream(tmp_path / "train", "train", lambda s, name: iter([(name, s.read())]), timeout=1)
    assert list(stream.samples(1)) == [("train_1", b"pass 1")]


@pytest.mark.parametrize("data_format", ["recordio", "manifest"])
def test_an_empty_fifo_is_an_error_not_an_epoch_of_nothing(tmp_path, data_format):
    (tmp_path / "train_0").write_bytes(b"")
    parse = partial(recordio_source.stream_samples, num_classes=2, label_width=None) if data_format == "recordio" \
        else partial(manifest.stream_samples, num_classes=2)
    stream = PipeStream(tmp_path / "train", "train", parse, timeout=1)
    with pytest.raises(DataError) as raised:
        list(StreamBatches(stream, 4, training=True))
    assert str(raised.value).startswith(f"train_0: the FIFO held no records ({tmp_path / 'train_0'} ended before its "
                                        "first record); in Pipe mode SageMaker streams the whole train channel once "
                                        "per epoch")


def test_pipe_timeout_from_the_environment(monkeypatch):
    monkeypatch.setenv("SAGEDET_PIPE_TIMEOUT", "30")
    assert pipe_timeout() == 30
    monkeypatch.setenv("SAGEDET_PIPE_TIMEOUT", "soon")
    with pytest.raises(DataError, match="SAGEDET_PIPE_TIMEOUT='soon': expected a number of seconds > 0"):
        pipe_timeout()


def test_workers_that_fit_in_shared_memory():
    mb = 2**20
    # two batches in flight per worker and two held by the training process
    assert workers_that_fit(4, 10 * mb, 64 * mb) == 2
    assert workers_that_fit(4, 10 * mb, 100 * mb) == 4
    assert workers_that_fit(4, 10 * mb, 100 * mb, processes=2) == 1  # the host's processes share it
    assert workers_that_fit(2, 33 * mb, 64 * mb) == 0 and workers_that_fit(2, 100 * mb, 64 * mb) == 0
    assert workers_that_fit(3, 10 * mb, None) == 3  # no /dev/shm: nothing to fit
    assert workers_that_fit(0, 10 * mb, 64 * mb) == 0
    free = shared_memory_free()
    assert free is None or free > 0
