"""Serving on a GPU: each inference path under CUDA's autocast gives the fp32 CPU model's outputs within
bf16's tolerance (a model autocast moves further is served in float32), and a batching predictor
answers concurrent requests with their own detections.

Skipped without CUDA (this project's CI has none). ``SAGEDET_TEST_DEVICE=cpu`` runs the same checks on
the CPU, which is how the tests' own logic is checked on a machine without a GPU; the GPU benchmark
suite (bench/gpu_suite.sh) runs them on a lent GPU.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from serve_harness import encode, scene, write_model
from trained_like import photos
from trained_like import write_model as write_trained_like

from sagedet.export.writer import TOLERANCE
from sagedet.model.saved import load_detector
from sagedet.serve.codecs import Options, decode_image
from sagedet.serve.engines import available_paths, build_engine
from sagedet.serve.predictor import Batching, Predictor

DEVICE = torch.device(os.environ.get("SAGEDET_TEST_DEVICE", "cuda"))
pytestmark = pytest.mark.skipif(DEVICE.type == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA GPU")

# Scores are probabilities and boxes fractions of the image: under bf16 autocast (8 bits of mantissa,
# relative rounding 2^-9 per operation, through ~20 layers) they move by up to a few hundredths.
AUTOCAST_TOLERANCE = 0.05
LIMIT = 64_000_000


def tolerance(precision: str) -> float:
    return TOLERANCE if precision == "float32" else AUTOCAST_TOLERANCE


@pytest.fixture(scope="module", params=[("vgg-16", 268), ("resnet-50", 257), ("mobilenet-v3", 128)],
                ids=lambda p: p[0])
def trained_like_dir(request, tmp_path_factory) -> Path:
    network, size = request.param
    root = tmp_path_factory.mktemp(f"cuda-{network}")
    write_trained_like(root / "model", network, size)
    return root / "model"


@pytest.mark.parametrize("path", ["eager", "torchscript"])
def test_each_device_path_gives_the_fp32_cpu_outputs_within_tolerance(path: str, trained_like_dir: Path):
    reference, metadata = load_detector(trained_like_dir)
    model, _ = load_detector(trained_like_dir)
    assert path in available_paths(DEVICE, model)
    engine = build_engine(path, model.eval().to(DEVICE), trained_like_dir, DEVICE)
    images = photos(3, model.image_shape)
    with torch.inference_mode():
        want = reference.eval().decode(*reference(images))
        got = engine(images.to(DEVICE))
    assert want[0].std() > 1e-3  # scores that vary, so a wrong path cannot match by chance
    if DEVICE.type == "cuda":  # auto's autocast, or float32 where it moved this model past the tolerance:
        # on a bf16 CPU vgg-16's and resnet-50's stay within it (0.02) and mobilenet-v3's random convolutions
        # move 0.3-0.4, so only mobilenet-v3 may fall back
        reduced = engine.precision in ("bf16", "fp16")
        assert reduced or (metadata["base_network"] == "mobilenet-v3" and engine.failed), engine.describe()
    for a, b in zip(got, want):
        assert a.device.type == DEVICE.type and a.dtype == torch.float32
        torch.testing.assert_close(a.cpu(), b, atol=tolerance(engine.precision), rtol=0)


def rows(prediction) -> list[tuple]:
    return [(label, score, *box) for box, score, label in
            zip(prediction.boxes, prediction.scores, prediction.labels)]


def is_among(row: tuple, candidates: list[tuple], tol: float) -> bool:
    return any(c[0] == row[0] and all(abs(a - b) <= tol for a, b in zip(c[1:], row[1:])) for c in candidates)


def test_a_batching_predictor_on_the_device_answers_each_request_with_its_own_detections(tmp_path: Path):
    write_model(tmp_path / "model", image_shape=96)
    device = str(DEVICE)
    batched = Predictor.load(tmp_path / "model", device, batching=Batching(max_size=4, max_delay=0.5), decode_slots=8)
    alone = Predictor.load(tmp_path / "model", device)
    images = [encode(scene(96 + 8 * i, 80 + 4 * i, seed=i)) for i in range(8)]
    # Each image's own detections, with room to spare: under autocast a batch of 4 and a batch of 1 may
    # round differently, so near-equal scores can trade the last places.
    expected = [rows(alone.predict(decode_image(data, LIMIT, 96), Options(0.0, 40))) for data in images]
    assert len({tuple(r[:5]) for r in expected}) == 8  # the images' answers differ, so a mix-up would show
    start = threading.Barrier(8)

    def request(i: int):
        start.wait()
        return batched.predict_bytes(images[i], Options(0.0, 5 + i), LIMIT, wait=60)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(request, range(8)))
    assert batched.batcher.stats.images == 8 and batched.batcher.stats.largest > 1
    tol = 2e-4 if {batched.engine.precision, alone.engine.precision} == {"float32"} else 2e-2
    for i, answer in enumerate(answers):
        got = rows(answer)
        assert len(got) == 5 + i
        for row in got:
            assert is_among(row, expected[i], tol), f"request {i}: detection {row} is not its image's"
