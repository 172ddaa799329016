"""``SAGEDET_PRECISION``: the server's arithmetic. bf16 on the CPU answers within the stated tolerance of
the float32 model (and is really computed in bf16), the float32-only paths are refused under it, a
precision the device cannot run is named, and a model that bf16 moves too far stops the worker.

bf16 runs on any CPU here: natively where the CPU has AVX512_BF16 or AMX, else emulated by oneDNN
(slower, the same rounding), so these checks run on every machine.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from serve_harness import Server, encode, one_torch_thread, scene  # noqa: F401 (autouse fixture)
from trained_like import photos
from trained_like import write_model as write_trained_like

from sagedet.errors import ConfigError, ModelError
from sagedet.model import precision as precision_module
from sagedet.model.precision import inference_dtype
from sagedet.model.saved import load_detector
from sagedet.serve import engines
from sagedet.serve.codecs import Options, decode_image
from sagedet.serve.engines import PRECISION_TOLERANCE, available_paths, build_engine
from sagedet.serve.predictor import Predictor
from sagedet.serve.settings import load_settings

CPU = torch.device("cpu")


@pytest.fixture(scope="module", params=[("vgg-16", 268), ("resnet-50", 257)], ids=lambda p: p[0])
def trained_like_dir(request, tmp_path_factory) -> Path:
    network, size = request.param
    root = tmp_path_factory.mktemp(f"bf16-{network}")
    write_trained_like(root / "model", network, size)
    return root / "model"


@pytest.mark.parametrize("path", ["eager", "torchscript"])
def test_bf16_on_the_cpu_answers_within_the_tolerance_of_float32(path: str, trained_like_dir: Path):
    reference, _ = load_detector(trained_like_dir)
    model, _ = load_detector(trained_like_dir)
    engine = build_engine(path, model.eval(), trained_like_dir, CPU, precision="bf16")
    assert (engine.name, engine.precision) == (path, "bf16")
    assert engine.describe().startswith(f"{path} path in bf16")
    images = photos(3, model.image_shape)
    with torch.inference_mode():
        want = reference.eval().decode(*reference(images))
        got = engine(images)
    assert want[0].std() > 1e-3  # scores that vary, so a wrong path cannot match by chance
    differences = [(a - b).abs().max().item() for a, b in zip(got, want)]
    assert all(a.dtype == torch.float32 for a in got)
    assert max(differences) <= PRECISION_TOLERANCE, differences
    assert differences[0] > 1e-4, differences  # bf16 really ran: float32 paths agree within ~1e-6 here


def test_auto_under_bf16_measures_only_the_paths_that_run_it(trained_like_dir: Path):
    model, _ = load_detector(trained_like_dir)
    assert available_paths(CPU, model, torch.bfloat16) == ["eager", "torchscript"]
    assert "winograd" in available_paths(CPU, model) and "onnxruntime" in available_paths(CPU, model)
    engine = build_engine("auto", model.eval(), trained_like_dir, CPU, precision="bf16")
    assert set(engine.timings) == {"eager", "torchscript"} and not engine.failed
    assert engine.precision == "bf16" and engine.timings[engine.name] == min(engine.timings.values())


@pytest.mark.parametrize("path", ["winograd", "onnxruntime"])
def test_the_float32_paths_are_refused_under_bf16_naming_both_settings(path: str, trained_like_dir: Path):
    model, _ = load_detector(trained_like_dir)
    with pytest.raises(ConfigError, match=rf"^SAGEDET_INFERENCE_PATH={path}: not available in this worker: it "
                                          r"computes in float32 only, and SAGEDET_PRECISION=bf16 asks for bf16; "
                                          r"available: auto, eager, torchscript$"):
        build_engine(path, model, trained_like_dir, CPU, precision="bf16")


def test_float32_keeps_the_cpus_default_paths(trained_like_dir: Path):
    model, _ = load_detector(trained_like_dir)
    engine = build_engine("torchscript", model.eval(), trained_like_dir, CPU, precision="float32")
    assert engine.precision == "float32"
    assert available_paths(CPU, model, inference_dtype("float32", CPU)) == available_paths(CPU, model)


def test_a_model_bf16_moves_too_far_stops_the_worker_naming_the_difference(trained_like_dir: Path, monkeypatch):
    """Held to a tolerance no bf16 arithmetic meets, every path is left out and the worker stops, saying
    by how much each path differs and to serve in float32; a requested path stops it the same way."""
    monkeypatch.setattr(engines, "PRECISION_TOLERANCE", 1e-7)
    model, _ = load_detector(trained_like_dir)
    with pytest.raises(ModelError) as error:
        build_engine("auto", model.eval(), trained_like_dir, CPU, precision="bf16")
    message = str(error.value)
    assert message.startswith("SAGEDET_PRECISION=bf16: no inference path answers within 1e-07 of the float32 model: ")
    for path in ("eager", "torchscript"):
        assert (f"{path} left out: the {path} path under SAGEDET_PRECISION=bf16 does not answer as the float32 model "
                "does: its outputs differ from the model's by ") in message
    assert message.endswith("serve this model in float32 (SAGEDET_PRECISION=float32)")
    with pytest.raises(ModelError, match=r"^SAGEDET_INFERENCE_PATH=eager: the eager path under SAGEDET_PRECISION="
                                         r"bf16 does not answer as the float32 model does: its outputs differ from "
                                         r"the model's by [0-9.e-]+ on the probe images \(allowed 1e-07\)$"):
        build_engine("eager", model, trained_like_dir, CPU, precision="bf16")


@pytest.fixture(params=[True, False], ids=["bf16-cpu", "older-cpu"])
def native_bf16(request, monkeypatch) -> bool:
    """Whether the CPU has bf16 instructions, as ``auto`` sees it: both kinds, on whichever CPU runs the
    tests (bf16 itself runs on any: emulated where the CPU lacks the instructions)."""
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: request.param)
    return request.param


def test_auto_on_the_cpu_races_bf16_against_float32_where_the_cpu_has_bf16(trained_like_dir: Path, native_bf16):
    model, _ = load_detector(trained_like_dir)
    reference, _ = load_detector(trained_like_dir)
    engine = build_engine("auto", model.eval(), trained_like_dir, CPU)
    assert set(engine.timings) == {"eager", "torchscript", "winograd", "onnxruntime"} and not engine.failed
    if native_bf16:
        assert engine.precisions == {"eager": "bf16", "torchscript": "bf16", "winograd": "float32",
                                     "onnxruntime": "float32"}
        assert engine.precision == engine.precisions[engine.name]
        assert "measured per image: eager in bf16 " in engine.describe()
    else:
        assert engine.precision == "float32" and engine.precisions == {}
    images = photos(2, model.image_shape)
    with torch.inference_mode():
        want = reference.eval().decode(*reference(images))
        got = engine(images)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=PRECISION_TOLERANCE if engine.precision == "bf16" else 1e-3, rtol=0)


def test_auto_serves_a_model_bf16_moves_too_far_in_float32_saying_why(tmp_path: Path, monkeypatch):
    """mobilenet-v3 with every convolution random moves by ~0.3 under bf16 on the probe batch: auto leaves
    its bf16 paths out (float32 ones stay in the race), and a path asked for by name runs in float32;
    each says by how much bf16 differed, and answers as the float32 model does."""
    write_trained_like(tmp_path / "model", "mobilenet-v3", 128)
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: True)
    model, _ = load_detector(tmp_path / "model")
    reference, _ = load_detector(tmp_path / "model")
    differs = (r"path in bf16 autocast does not answer as the float32 model does: its outputs differ from the "
               r"model's by [0-9.]+ on the probe images \(allowed 0.05\)")
    raced = build_engine("auto", model.eval(), tmp_path / "model", CPU)
    assert (raced.name, raced.precision, set(raced.timings)) == ("onnxruntime", "float32", {"onnxruntime"})
    for path in ("eager", "torchscript"):
        assert re.fullmatch(rf"left out: the {path} {differs}", raced.failed[path]), raced.failed
    named = build_engine("torchscript", model, tmp_path / "model", CPU)
    assert named.precision == "float32" and list(named.failed) == ["bf16"]
    assert re.fullmatch(rf"left out, serving in float32: SAGEDET_INFERENCE_PATH=torchscript: the torchscript "
                        rf"{differs}", named.failed["bf16"]), named.failed
    assert named.describe().startswith("torchscript path in float32 (bf16 left out, serving in float32: ")
    images = photos(2, 128)
    with torch.inference_mode():
        want = reference.eval().decode(*reference(images))
        for engine in (raced, named):
            for a, b in zip(engine(images), want):
                torch.testing.assert_close(a, b, atol=1e-3, rtol=0)


def test_auto_on_a_gpu_serves_in_float32_when_no_path_stays_within_the_tolerance(tmp_path: Path, monkeypatch):
    """On a GPU only eager and torchscript run, both under autocast: when neither stays within the tolerance
    the worker serves in float32. The same logic on this CPU, with every float32-only path unavailable."""
    write_trained_like(tmp_path / "model", "mobilenet-v3", 128)
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(engines, "available_paths", lambda device, model, dtype=None: ["eager", "torchscript"])
    model, _ = load_detector(tmp_path / "model")
    engine = build_engine("auto", model.eval(), tmp_path / "model", CPU)
    assert engine.precision == "float32" and set(engine.timings) == {"eager", "torchscript"}
    assert engine.failed["bf16"].startswith("left out, serving in float32: no inference path answers within 0.05 "
                                            "of the float32 model in bf16: eager left out: the eager path in bf16 "
                                            "autocast does not answer"), engine.failed


# --- the setting --------------------------------------------------------------------------------------

def test_the_precision_is_read_and_a_bad_one_named(tmp_path: Path):
    assert load_settings({"SAGEDET_OPT_ML": str(tmp_path)}, gpus=lambda: 0).precision == "auto"
    assert load_settings({"SAGEDET_OPT_ML": str(tmp_path), "SAGEDET_PRECISION": " BF16 "}, gpus=lambda: 0).precision == "bf16"
    with pytest.raises(ConfigError, match=r"SAGEDET_PRECISION='half': expected one of auto, float32, bf16, fp16"):
        load_settings({"SAGEDET_OPT_ML": str(tmp_path), "SAGEDET_PRECISION": "half"}, gpus=lambda: 0)


@pytest.mark.parametrize("precision, capability, want", [
    ("auto", (9, 0), torch.bfloat16), ("auto", (7, 0), torch.float16), ("float32", (9, 0), None),
    ("bf16", (8, 0), torch.bfloat16), ("fp16", (9, 0), torch.float16), ("fp16", (7, 5), torch.float16)])
def test_the_dtype_on_cuda_follows_the_precision_and_the_gpu(monkeypatch, precision, capability, want):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert inference_dtype(precision, torch.device("cuda", 0)) == want


def test_a_precision_the_device_cannot_run_is_named_with_what_it_can(monkeypatch):
    assert inference_dtype("bf16", CPU) == torch.bfloat16
    for native, auto in ((True, torch.bfloat16), (False, None)):  # auto: bf16 only where the CPU has it
        monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda native=native: native)
        assert inference_dtype("auto", CPU) == auto
    with pytest.raises(ConfigError, match=r"^SAGEDET_PRECISION=fp16 needs a CUDA device; on cpu use bf16 \(CPUs with "
                                          r"AVX512_BF16 or AMX run it natively\) or float32$"):
        inference_dtype("fp16", CPU)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    with pytest.raises(ConfigError, match=r"^SAGEDET_PRECISION=bf16 needs a GPU with bf16 tensor cores \(compute "
                                          r"capability 8\.0 or newer\); cuda:0 has 7\.5: use fp16 or auto$"):
        inference_dtype("bf16", torch.device("cuda", 0))
    with pytest.raises(ConfigError, match=r"^--precision 'fp32': expected one of auto, float32, bf16, fp16$"):
        inference_dtype("fp32", CPU, "--precision")


# --- the real server --------------------------------------------------------------------------------------

def test_the_server_under_bf16_says_so_and_answers_as_the_float32_model(tmp_path: Path):
    write_trained_like(tmp_path / "model", "vgg-16", 268)
    image = encode(scene(200, 150, seed=5))
    alone = Predictor.load(tmp_path / "model", "cpu", inference_path="eager", precision="float32")
    assert alone.engine.precision == "float32"
    options = Options(0.0, 200)
    want = alone.predict(decode_image(image, 10**8, alone.image_shape), options)
    server = Server(tmp_path, tmp_path / "serve.log", SAGEMAKER_MODEL_SERVER_WORKERS="1", SAGEDET_DEVICE="cpu",
                    SAGEDET_PRECISION="bf16").start()
    try:
        response = server.invoke(image, attributes="max_detections=20")
    finally:
        server.stop()
    log = server.output()
    assert response.status == 200, log
    assert " path in bf16 (measured per image: eager " in log
    got = response.json()["prediction"]
    assert len(got) == 20
    fp32 = [(label, score, *box) for box, score, label in zip(want.boxes, want.scores, want.labels)]
    for row in got:  # [class, score, xmin, ymin, xmax, ymax]: each among the float32 model's, within the tolerance
        assert any(int(row[0]) == c[0] and all(abs(a - b) <= PRECISION_TOLERANCE for a, b in zip(row[1:], c[1:]))
                   for c in fp32), (row, fp32[:20])
