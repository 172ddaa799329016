"""The worker's inference paths: each matches eager PyTorch; ``auto`` measures them and keeps the fastest."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest
import torch
from serve_harness import one_torch_thread, write_model  # noqa: F401
from trained_like import write_model as write_trained_like

from sagedet.errors import ConfigError
from sagedet.export.writer import TOLERANCE
from sagedet.model.saved import load_detector
from sagedet.serve import engines
from sagedet.serve.engines import available_paths, build_engine
from sagedet.serve.predictor import Batching, Predictor

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("engines")
    write_model(root / "model", image_shape=96)
    return root / "model"


@pytest.fixture(scope="module")
def vgg_dir(tmp_path_factory) -> Path:
    """vgg-16 at its smallest size: it has layers the winograd path converts (mobilenet-v3 has none).
    Its outputs spread as a trained model's: with raw random vgg-16 weights the logits reach the
    hundreds, where fp32 rounding alone (of any path, eager's included) exceeds the tolerance."""
    root = tmp_path_factory.mktemp("engines-vgg")
    write_trained_like(root / "model", "vgg-16", 268)
    return root / "model"


@pytest.mark.parametrize("path, folder", [("eager", "model_dir"), ("torchscript", "model_dir"),
                                          ("onnxruntime", "model_dir"), ("winograd", "vgg_dir")])
def test_each_path_gives_the_eager_outputs_for_any_batch(path: str, folder: str, request):
    model_dir = request.getfixturevalue(folder)
    model, _ = load_detector(model_dir)
    engine = build_engine(path, model, model_dir, CPU)
    size = model.image_shape
    images = torch.rand(3, 3, size, size, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        want = model.decode(*model(images))
        got = engine(images)
    assert engine.name == path and want[0].std() > 1e-3
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=TOLERANCE, rtol=0)


def test_auto_measures_every_available_path_and_keeps_the_fastest(model_dir: Path):
    model, _ = load_detector(model_dir)
    engine = build_engine("auto", model, model_dir, CPU)
    # mobilenet-v3 has no layer the winograd path would convert
    assert set(engine.timings) == {"eager", "torchscript", "onnxruntime"} == set(available_paths(CPU, model))
    assert all(ms > 0 for ms in engine.timings.values())
    assert engine.timings[engine.name] == min(engine.timings.values())
    assert engine.describe().startswith(f"{engine.name} path (measured per image: eager ")


def test_auto_measures_on_the_largest_batch_the_worker_will_run(model_dir: Path, monkeypatch):
    seen = []
    original = engines.measure

    def measure(graphs, image_shape, device, batch=1):
        seen.append(batch)
        return original(graphs, image_shape, device, batch=batch)
    monkeypatch.setattr(engines, "measure", measure)
    batched = Predictor.load(model_dir, "cpu", batching=Batching(max_size=4, max_delay=0.01))
    alone = Predictor.load(model_dir, "cpu")
    assert seen == [4, 1]
    assert "measured per image in batches of 4: eager " in batched.describe()
    assert "measured per image: eager " in alone.describe()
    # a CPU worker raises glibc's malloc thresholds before it measures (sagedet.allocator)
    assert "threads, glibc malloc: mmap threshold 32 MiB, trim threshold 1024 MiB)" in alone.describe()


def test_the_probe_times_no_path_while_the_previous_ones_threads_still_run():
    """ONNX Runtime's pool threads spin on after a call and would slow the next path's timed call:
    the probe pauses before each timed call, longer than this stand-in's 20 ms of work after it."""
    busy = threading.Event()

    def leaves_threads_running(images):
        busy.set()
        threading.Timer(0.02, busy.clear).start()
        return torch.zeros(1), torch.zeros(1)

    def next_path(images):
        called_while_busy.append(busy.is_set())
        return torch.zeros(1), torch.zeros(1)

    graphs = {"onnxruntime": leaves_threads_running, "torchscript": next_path}
    for pause, want in [(engines.PROBE_PAUSE_SECONDS, False), (0.0, True)]:
        called_while_busy: list[bool] = []
        timings = engines.measure(graphs, 8, CPU, rounds=3, pause=pause)
        assert set(timings) == set(graphs)
        assert called_while_busy[1:] == [want] * 3  # the first, untimed call follows at once


def test_onnxruntime_without_the_package_is_refused_with_the_way_to_get_it(model_dir: Path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    model, _ = load_detector(model_dir)
    with pytest.raises(ConfigError, match=r"SAGEDET_INFERENCE_PATH=onnxruntime: not available .*pip install "
                                          r"'sagedet\[onnxruntime\]'.*available: auto, eager, torchscript$"):
        build_engine("onnxruntime", model, model_dir, CPU)


def test_winograd_is_offered_for_networks_with_deep_3x3_layers_only(model_dir: Path, vgg_dir: Path):
    vgg, _ = load_detector(vgg_dir)
    mobilenet, _ = load_detector(model_dir)
    assert "winograd" in available_paths(CPU, vgg)
    with pytest.raises(ConfigError,
                       match=r"SAGEDET_INFERENCE_PATH=winograd: not available .*harmonic mean of 80 or more"):
        build_engine("winograd", mobilenet, model_dir, CPU)


def test_auto_skips_a_path_that_cannot_be_built_and_says_why(model_dir: Path, monkeypatch):
    import sagedet.serve.engines as engines

    def broken(model, device):
        raise RuntimeError("tracing failed")
    monkeypatch.setattr(engines, "torchscript_path", broken)
    model, _ = load_detector(model_dir)
    engine = build_engine("auto", model, model_dir, CPU)
    assert set(engine.timings) == {"eager", "onnxruntime"} and engine.name in engine.timings
    assert "torchscript could not be built (RuntimeError: tracing failed)" in engine.describe()
