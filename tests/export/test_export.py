"""``sagedet export``: TorchScript and ONNX files whose outputs and detections match eager PyTorch."""

from __future__ import annotations

import json
import re
import shutil
import statistics
import sys
import tarfile
import time
from pathlib import Path

import pytest
import torch

from sagedet.cli import main
from sagedet.errors import ModelError
from sagedet.export.onnx import OnnxRuntimeGraph, to_bytes
from sagedet.export.writer import TOLERANCE
from sagedet.model.saved import load_detector
from sagedet.model.ssd import build_ssd, select_detections
from sagedet.serve.codecs import Options
from sagedet.serve.predictor import Predictor
from trained_like import CLASS_NAMES, photos, write_model

def assert_same_detections(got, want, top: int = 20) -> None:
    """The best ``top`` detections of ``got`` are eager's, matched by value (scores within the
    tolerance may swap places)."""
    assert len(got.scores) == len(want.scores) > 0
    for box, score, label in zip(got.boxes[:top], got.scores[:top], got.labels[:top]):
        close = ((want.labels == label) & ((want.scores - score).abs() <= TOLERANCE)
                 & ((want.boxes - box).abs() <= TOLERANCE).all(dim=1))
        assert close.any(), f"exported detection {label.item()} {score.item():.4f} {box.tolist()} is not eager's"


@pytest.fixture(scope="module", params=[("mobilenet-v3", 160), ("vgg-16", 268), ("resnet-50", 257)],
                ids=["mobilenet-v3", "vgg-16", "resnet-50"])
def exported(request, tmp_path_factory):
    network, side = request.param
    root = tmp_path_factory.mktemp(f"export-{network}")
    write_model(root / "model", network, side)
    assert main(["export", "--model", str(root / "model"), "--output", str(root / "out")]) == 0
    return root


def test_export_writes_both_graphs_and_a_manifest(exported: Path):
    out = exported / "out"
    manifest = json.loads((out / "export.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "model.onnx", "model.torchscript.pt"]
    _, metadata = load_detector(exported / "model")
    assert manifest["class_names"] == CLASS_NAMES and manifest["image_shape"] == metadata["image_shape"]
    assert manifest["base_network"] == metadata["base_network"]
    assert manifest["outputs"]["scores"]["shape"][2] == len(CLASS_NAMES)
    for entry in manifest["files"].values():
        assert entry["largest_difference_from_eager"] <= TOLERANCE


def test_exported_torchscript_runs_float32_convolutions_as_ieee_float32_anywhere(exported: Path):
    """Tracing writes cuDNN's settings into every convolution as constants, the process's TF32 default
    among them: a file exported as torch defaults would run in TF32 on a GPU, past the tolerance, even
    where the loading process turned TF32 off."""
    graph = torch.jit.load(str(exported / "out" / "model.torchscript.pt"), map_location="cpu")
    assert torch.backends.cudnn.allow_tf32  # torch's default, in this process as in an exporting one
    convolutions = [node for node in graph.graph.nodes() if node.kind() == "aten::_convolution"]
    assert convolutions
    # aten::_convolution(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups,
    #                    benchmark, deterministic, cudnn_enabled, allow_tf32)
    assert {node.inputsAt(12).toIValue() for node in convolutions} == {False}


@pytest.mark.parametrize("form", ["torchscript", "onnx"])
def test_exported_graph_matches_eager_outputs_and_detections(exported: Path, form: str):
    model, metadata = load_detector(exported / "model")
    graph = (torch.jit.load(str(exported / "out" / "model.torchscript.pt")) if form == "torchscript"
             else OnnxRuntimeGraph(exported / "out" / "model.onnx"))
    images = photos(5, model.image_shape)  # a batch size the export never saw (it traces with 2)
    with torch.inference_mode():
        scores, boxes = model.decode(*model(images))
        found_scores, found_boxes = graph(images)
    assert found_scores.shape == scores.shape and found_boxes.shape == boxes.shape
    assert scores.std() > 1e-3  # the outputs vary: a constant graph could not pass
    torch.testing.assert_close(found_scores, scores, atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(found_boxes, boxes, atol=TOLERANCE, rtol=0)
    expected = select_detections(scores, boxes, metadata["nms_threshold"])
    found = select_detections(found_scores, found_boxes, metadata["nms_threshold"])
    for want, got in zip(expected, found):
        assert_same_detections(got, want)


def test_server_runs_an_exported_onnx_file_from_the_model_folder(exported: Path, tmp_path: Path, monkeypatch):
    """A model.onnx exported from the folder's own weights is what the onnxruntime path runs (the
    worker makes no export of its own), with the eager model's detections."""
    import sagedet.export.onnx as onnx

    def no_export(model):
        raise AssertionError("the worker exported the model itself instead of running the folder's model.onnx")
    model_dir = tmp_path / "model"
    shutil.copytree(exported / "model", model_dir)
    shutil.copyfile(exported / "out" / "model.onnx", model_dir / "model.onnx")
    monkeypatch.setattr(onnx, "to_bytes", no_export)
    from_file = Predictor.load(model_dir, "cpu", inference_path="onnxruntime")
    eager = Predictor.load(model_dir, "cpu", inference_path="eager", precision="float32")
    assert from_file.engine.name == "onnxruntime"
    image = photos(1, from_file.image_shape)
    options = Options(0.0, 50)
    assert_same_detections(from_file.detect(image, options), eager.detect(image, options), top=50)


def test_server_refuses_an_exported_onnx_file_of_other_weights(exported: Path, tmp_path: Path):
    """The folder's weights differ from the exported file's (a model.onnx left from an earlier model):
    asked for the onnxruntime path, the worker stops naming the file rather than answer for the
    other model (under auto it leaves the path out: tests/serve/test_serve_engines.py)."""
    model_dir = tmp_path / "model"
    _, metadata = load_detector(exported / "model")
    write_model(model_dir, metadata["base_network"], metadata["image_shape"], seed=1)
    (model_dir / "model.onnx").write_bytes((exported / "out" / "model.onnx").read_bytes())
    onnx_file = re.escape(str(model_dir / "model.onnx"))
    with pytest.raises(ModelError, match=rf"^SAGEDET_INFERENCE_PATH=onnxruntime: {onnx_file} is not the model in "
                                         r".*/model\.safetensors: its outputs differ"):
        Predictor.load(model_dir, "cpu", inference_path="onnxruntime")


def test_export_reads_a_model_archive(tmp_path: Path, capsys):
    write_model(tmp_path / "model", "mobilenet-v3", 64)
    with tarfile.open(tmp_path / "model.tar.gz", "w:gz") as archive:
        for file in (tmp_path / "model").iterdir():
            archive.add(file, arcname=file.name)
    assert main(["export", "--model", str(tmp_path / "model.tar.gz"), "--output", str(tmp_path / "out"),
                 "--format", "torchscript"]) == 0
    assert (tmp_path / "out" / "model.torchscript.pt").is_file() and not (tmp_path / "out" / "model.onnx").exists()
    assert "model.torchscript.pt: torchscript, largest difference from eager" in capsys.readouterr().out


def test_export_of_a_missing_model_names_it(tmp_path: Path, capsys):
    assert main(["export", "--model", str(tmp_path / "nothing"), "--output", str(tmp_path / "out")]) == 1
    assert f"--model {tmp_path / 'nothing'}: no such folder or model archive" in capsys.readouterr().err


def test_export_of_a_folder_without_a_model_says_what_it_needs(tmp_path: Path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["export", "--model", str(tmp_path / "empty"), "--output", str(tmp_path / "out")]) == 1
    assert "model.json and model.safetensors" in capsys.readouterr().err


@pytest.fixture(scope="module")
def small_model(tmp_path_factory) -> Path:
    model_dir = tmp_path_factory.mktemp("small") / "model"
    write_model(model_dir, "mobilenet-v3", 64)
    return model_dir


def test_an_unknown_format_is_named_with_the_allowed_ones(small_model: Path, tmp_path: Path):
    from sagedet.errors import ConfigError
    from sagedet.export.writer import export_model
    with pytest.raises(ConfigError, match=r"--format tflite: expected one or more of torchscript, onnx"):
        export_model(small_model, tmp_path / "out", ["torchscript", "tflite"])
    assert not (tmp_path / "out").exists()


def test_a_graph_beyond_the_tolerance_is_removed_and_named(small_model: Path, tmp_path: Path, monkeypatch, capsys):
    import sagedet.export.writer as writer
    monkeypatch.setattr(writer, "TOLERANCE", -1.0)  # no difference can pass: the refusal path runs
    assert main(["export", "--model", str(small_model), "--output", str(tmp_path), "--format", "torchscript"]) == 1
    assert "the exported torchscript graph differs from the eager model by" in capsys.readouterr().err
    assert not (tmp_path / "model.torchscript.pt").exists() and not (tmp_path / "export.json").exists()


def test_onnx_export_without_onnxscript_says_how_to_install_it(small_model: Path, tmp_path: Path, monkeypatch,
                                                                capsys):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # import onnxscript now raises ImportError
    assert main(["export", "--model", str(small_model), "--output", str(tmp_path), "--format", "onnx"]) == 1
    assert "onnxscript is not installed: pip install 'sagedet[export]'" in capsys.readouterr().err


def test_a_file_onnx_runtime_cannot_load_is_named(tmp_path: Path):
    from sagedet.errors import SagedetError
    broken = tmp_path / "model.onnx"
    broken.write_bytes(b"not an onnx graph")
    with pytest.raises(SagedetError, match=rf"{broken}: ONNX Runtime cannot load it"):
        OnnxRuntimeGraph(broken)


def _cpu_seconds_while_idle_after_a_run(graph: OnnxRuntimeGraph, images: torch.Tensor) -> float:
    """Median CPU time the process spends in the 0.1 s after a run while its own thread sleeps: ONNX
    Runtime's pool threads spinning on."""
    graph(images)
    spent = []
    for _ in range(5):
        graph(images)
        started = time.process_time()
        time.sleep(0.1)
        spent.append(time.process_time() - started)
    return statistics.median(spent)


def test_onnx_runtime_threads_stop_spinning_when_a_run_returns():
    """Left spinning, they take a core from what the worker does next (bench/checks/ort_spinning.py)."""
    model = build_ssd("mobilenet-v3", 3, 128).eval()
    exported = to_bytes(model)  # the worker's in-memory export
    images = torch.rand(1, 3, 128, 128)
    spinning = _cpu_seconds_while_idle_after_a_run(OnnxRuntimeGraph(exported, threads=2, stop_spinning=False), images)
    stopped = _cpu_seconds_while_idle_after_a_run(OnnxRuntimeGraph(exported, threads=2), images)
    assert spinning > 0.01, f"ONNX Runtime's threads did not spin after a run ({spinning:.4f} s): nothing to compare"
    assert stopped < 0.005, f"ONNX Runtime's threads took {stopped:.4f} s of CPU in the 0.1 s after a run"
