"""Request batching: concurrent requests share model calls, and each gets its own image's detections."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from serve_harness import Server, encode, one_torch_thread, scene, write_model  # noqa: F401

from sagedet.serve.batching import Batcher
from sagedet.serve.codecs import Options, decode_image
from sagedet.serve.errors import ServiceUnavailable
from sagedet.serve.predictor import Batching, Predictor

LIMIT = 64_000_000


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("opt_ml")
    write_model(root / "model")
    return root / "model"


def rows(prediction) -> list[tuple]:
    return [(label, round(score, 4), *(round(v, 4) for v in box)) for box, score, label in
            zip(prediction.boxes, prediction.scores, prediction.labels)]


def assert_close_rows(got: list[tuple], want: list[tuple], tol: float = 2e-4) -> None:
    assert len(got) == len(want)
    unmatched = list(want)
    for row in got:  # near-equal scores may swap places between batch sizes
        match = next((w for w in unmatched if w[0] == row[0] and all(abs(a - b) <= tol for a, b in
                                                                      zip(w[1:], row[1:]))), None)
        assert match is not None, f"detection {row} is not this image's"
        unmatched.remove(match)


def test_batched_requests_each_get_their_own_detections(model_dir: Path):
    # float32 for both: under auto a CPU with bf16 instructions may pick paths of two precisions for batches
    # of 4 and of 1, and this test is about whose detections each request gets
    batched = Predictor.load(model_dir, "cpu", batching=Batching(max_size=4, max_delay=0.5), decode_slots=8,
                             precision="float32")
    alone = Predictor.load(model_dir, "cpu", precision="float32")
    images = [encode(scene(96 + 8 * i, 80 + 4 * i, seed=i)) for i in range(8)]
    options = [Options(0.0, 5 + i) for i in range(8)]  # each request's own max_detections
    expected = [rows(alone.predict(decode_image(data, LIMIT, 64), option)) for data, option in zip(images, options)]
    assert len({tuple(r) for r in expected}) == 8  # the images' answers differ, so a mix-up would show
    start = threading.Barrier(8)

    def request(i: int):
        start.wait()
        return batched.predict_bytes(images[i], options[i], LIMIT, wait=60)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(request, range(8)))
    assert batched.batcher.stats.images == 8
    assert batched.batcher.stats.largest > 1  # requests really shared model calls
    assert batched.batcher.stats.batches < 8
    for i, answer in enumerate(answers):
        got = rows(answer)
        assert len(got) == 5 + i
        assert_close_rows(got, expected[i])


def test_a_batch_closes_after_its_delay_with_what_it_has():
    calls = []
    batcher = Batcher(lambda items: calls.append(list(items)) or [x * 10 for x in items], max_size=8, max_delay=0.05)
    started = time.monotonic()
    assert batcher.submit(3, time.monotonic() + 5) == 30
    assert time.monotonic() - started < 2
    assert calls == [[3]]
    batcher.close()


def test_a_failing_batch_fails_each_of_its_requests_and_the_batcher_lives_on():
    def run(items):
        if -1 in items:
            raise ValueError("bad item")
        return items
    batcher = Batcher(run, max_size=4, max_delay=0.2)
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(batcher.submit, item, time.monotonic() + 5) for item in (-1, 2)]
        errors = [f.exception() for f in futures]
    assert all(isinstance(e, ValueError) for e in errors)
    assert batcher.submit(7, time.monotonic() + 5) == 7
    batcher.close()


def test_a_request_not_served_by_its_deadline_gets_503():
    gate = threading.Event()
    batcher = Batcher(lambda items: gate.wait(5) and items, max_size=1, max_delay=0.0)
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(batcher.submit, 1, time.monotonic() + 10)
        time.sleep(0.1)
        with pytest.raises(ServiceUnavailable, match="SAGEMAKER_MODEL_SERVER_TIMEOUT"):
            batcher.submit(2, time.monotonic() + 0.2)
        gate.set()
        assert first.result() == 1
    batcher.close()


def test_batching_server_answers_concurrent_requests_with_their_own_detections(model_dir: Path, tmp_path: Path):
    """The real gunicorn server with batching on: concurrent answers equal the answers one at a time."""
    opt_ml = model_dir.parent
    server = Server(opt_ml, tmp_path / "serve.log", SAGEMAKER_MODEL_SERVER_WORKERS="1", SAGEDET_BATCH_SIZE="4",
                    SAGEDET_BATCH_DELAY_MS="200", SAGEDET_TORCH_THREADS="1").start()
    try:
        images = [encode(scene(100 + 6 * i, 90, seed=10 + i)) for i in range(8)]
        one_by_one = [server.invoke(data).json()["prediction"] for data in images]
        assert len({str(p) for p in one_by_one}) == 8
        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(server.invoke, images))
        assert [r.status for r in responses] == [200] * 8
        for response, alone in zip(responses, one_by_one):
            assert_close_rows([tuple(row) for row in response.json()["prediction"]],
                              [tuple(row) for row in alone])
        assert "request batches of up to 4 within 200 ms" in server.output()
    finally:
        assert server.stop() == 0


def test_the_server_feeds_the_model_what_validation_scored(model_dir: Path):
    """A served image reaches the model as the same tensor as in validation (decode, resize, scale), so the
    validation mAP a job reports is the served model's."""
    from sagedet.data.dataset import DetectionDataset
    from sagedet.data.sample import Objects, RawSample
    from sagedet.data.transforms import eval_transform, scale_pixels

    predictor = Predictor.load(model_dir, "cpu")
    for image_format, size in (("JPEG", (97, 61)), ("PNG", (40, 130))):
        data = encode(scene(*size, seed=3), image_format)
        raw = RawSample("validation/a", data, Objects(np.zeros((1, 4), np.float32) + [0.1, 0.1, 0.6, 0.7],
                                                      np.zeros(1, np.int64)))
        sample = DetectionDataset(None, eval_transform(predictor.image_shape))[raw]
        served = predictor.preprocess(decode_image(data, LIMIT, predictor.image_shape).image)
        assert served.shape == (1, 3, predictor.image_shape, predictor.image_shape)
        assert torch.equal(served[0], scale_pixels(sample.image)), image_format
