"""The worker's inference paths: each matches eager PyTorch; ``auto`` measures them and keeps the fastest."""

from __future__ import annotations

import re
import sys
import threading
from pathlib import Path

import pytest
import torch
from serve_harness import one_torch_thread, write_model  # noqa: F401
from trained_like import write_model as write_trained_like

from sagedet.errors import ConfigError, ModelError
from sagedet.export.writer import TOLERANCE
from sagedet.model import precision
from sagedet.model.saved import load_detector
from sagedet.serve import engines
from sagedet.serve.engines import available_paths, build_engine
from sagedet.serve.predictor import Batching, Predictor

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def float32_auto(monkeypatch):
    """``auto`` as on a CPU without bf16 instructions: every path in float32, each held to eager by the
    identity check. Where the CPU has bf16 instructions auto also races bf16 paths (test_serve_precision.py)."""
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)


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
    assert engine.describe().startswith(f"{engine.name} path in float32 (measured per image: eager ")


def test_auto_measures_on_the_largest_batch_the_worker_will_run(model_dir: Path, monkeypatch):
    seen = []
    original = engines.measure

    def measure(graphs, image_shape, device, batch=1, **options):
        seen.append(batch)
        return original(graphs, image_shape, device, batch=batch, **options)
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

    def broken(model, device, dtype=None):
        raise RuntimeError("tracing failed")
    monkeypatch.setattr(engines, "torchscript_path", broken)
    model, _ = load_detector(model_dir)
    engine = build_engine("auto", model, model_dir, CPU)
    assert set(engine.timings) == {"eager", "onnxruntime"} and engine.name in engine.timings
    assert "torchscript could not be built (RuntimeError: tracing failed)" in engine.describe()


def test_auto_leaves_out_a_path_that_does_not_answer_as_eager_and_says_why(model_dir: Path, monkeypatch):
    """The probe's first call of each path is compared with eager's: a path off by more than the
    identity tolerance, or failing on the probe images, is left out and the others are measured."""
    def off_by(model, device, dtype=None):
        graph = engines.eager_path(model, device)
        return lambda images: tuple(t + 0.02 for t in graph(images))

    def fails(model, device, dtype=None):
        def run(images):
            raise RuntimeError("bad input shape")
        return run
    monkeypatch.setattr(engines, "torchscript_path", off_by)
    monkeypatch.setattr(engines, "winograd_path", fails)
    monkeypatch.setattr(engines, "available_paths", lambda device, model, dtype=None: ["eager", "torchscript", "winograd"])
    model, _ = load_detector(model_dir)
    engine = build_engine("auto", model, model_dir, CPU)
    assert engine.name == "eager" and set(engine.timings) == {"eager"}
    described = engine.describe()
    assert ("torchscript left out: the torchscript path does not answer as the model does: its outputs differ from "
            "the model's by 0.02 on the probe images (allowed 0.01)") in described
    assert ("winograd left out: the winograd path does not answer as the model does: it fails on the model's "
            "images: RuntimeError: bad input shape") in described


def test_a_requested_path_that_does_not_answer_as_eager_stops_the_worker(model_dir: Path, monkeypatch):
    def off_by(model, device, dtype=None):
        graph = engines.eager_path(model, device)
        return lambda images: tuple(t + 0.02 for t in graph(images))
    monkeypatch.setattr(engines, "torchscript_path", off_by)
    model, _ = load_detector(model_dir)
    with pytest.raises(ModelError, match=r"^SAGEDET_INFERENCE_PATH=torchscript: the torchscript path does not "
                                         r"answer as the model does: its outputs differ from the model's by 0\.02"):
        build_engine("torchscript", model, model_dir, CPU)


STALE = {"another seed": r"is not the model in {weights}: its outputs differ from the model's by 0\.[0-9]+ on the "
                         r"probe images \(allowed 0\.01\)",
         "another side": r"takes images of shape \(batch, 3, 64, 64\), but {metadata} has image_shape 96 \(images "
                         r"of shape \(batch, 3, 96, 96\)\)"}


@pytest.fixture(scope="module", params=list(STALE))
def stale_onnx(request, tmp_path_factory) -> tuple[Path, str]:
    """A model folder whose model.onnx was exported from another model: the same network with other
    weights, or at another image side; and what the refusal says after the file's name."""
    from sagedet.export.onnx import to_bytes

    root = tmp_path_factory.mktemp("stale-onnx")
    write_model(root / "model", image_shape=96, seed=1)
    write_model(root / "previous", image_shape=96 if request.param == "another seed" else 64, seed=2)
    previous, _ = load_detector(root / "previous")
    (root / "model" / "model.onnx").write_bytes(to_bytes(previous))
    why = STALE[request.param].format(weights=re.escape(str(root / "model" / "model.safetensors")),
                                      metadata=re.escape(str(root / "model" / "model.json")))
    return root / "model", f"{re.escape(str(root / 'model' / 'model.onnx'))} {why}"


def test_auto_leaves_out_a_model_onnx_from_another_model(stale_onnx: tuple[Path, str]):
    folder, why = stale_onnx
    model, _ = load_detector(folder)
    engine = build_engine("auto", model, folder, CPU)
    assert engine.name != "onnxruntime" and set(engine.timings) == {"eager", "torchscript"}
    assert re.search(why + r".*; a model\.onnx left from another model\? Export it again from this folder "
                           r"\(sagedet export --model DIR --output DIR --format onnx\) or remove it",
                     engine.failed["onnxruntime"]), engine.failed
    assert "; onnxruntime " in engine.describe()
    images = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(7))
    with torch.inference_mode():
        for a, b in zip(engine(images), model.decode(*model(images))):
            torch.testing.assert_close(a, b, atol=TOLERANCE, rtol=0)  # the folder's own model answers


def test_a_requested_onnxruntime_path_refuses_a_model_onnx_from_another_model(stale_onnx: tuple[Path, str]):
    folder, why = stale_onnx
    model, _ = load_detector(folder)
    with pytest.raises(ModelError, match=r"^SAGEDET_INFERENCE_PATH=onnxruntime: " + why):
        build_engine("onnxruntime", model, folder, CPU)
