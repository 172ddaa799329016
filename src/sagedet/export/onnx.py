"""ONNX: the :class:`~sagedet.export.graph.DetectionGraph` exported with torch's dynamo exporter
(free batch size), and an ONNX Runtime session that runs it on tensors."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch

from sagedet.errors import SagedetError
from sagedet.export.graph import INPUT_NAMES, OUTPUT_NAMES, DetectionGraph
from sagedet.model.ssd import SSDDetector

OPSET = 18
MAX_BATCH = 1024


def _require(module: str, extra: str = "export"):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise SagedetError(f"{module} is not installed: pip install 'sagedet[{extra}]' (or pip install {module}) "
                           f"to use ONNX") from error


def save(model: SSDDetector, path: Path) -> Path:
    """Write ``path`` (ONNX opset 18, weights inside the file) from the model on the CPU."""
    _require("onnxscript")
    graph = DetectionGraph(model).cpu().eval()
    example = torch.rand(2, 3, model.image_shape, model.image_shape)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(graph, (example,), input_names=INPUT_NAMES, output_names=OUTPUT_NAMES,
                                        dynamic_shapes={"images": {0: batch}}, opset_version=OPSET, dynamo=True,
                                        external_data=False, verbose=False)
    finally:
        quiet.setLevel(level)
    program.save(str(path), external_data=False)
    return path


def to_bytes(model: SSDDetector) -> bytes:
    """The graph as ONNX bytes, quickly, for a worker's own ONNX Runtime session: torch's TorchScript-based
    exporter (``dynamo=False``; about 1 s where the dynamo exporter takes 20 s or more), which needs no
    onnx/onnxscript package. Files for others come from :func:`save`."""
    import io

    graph = DetectionGraph(model).cpu().eval()
    example = torch.rand(2, 3, model.image_shape, model.image_shape)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch marks this exporter deprecated
        torch.onnx.export(graph, (example,), buffer, input_names=INPUT_NAMES, output_names=OUTPUT_NAMES,
                          dynamic_axes={INPUT_NAMES[0]: {0: "batch"}}, opset_version=17, dynamo=False)
    return buffer.getvalue()


class OnnxRuntimeGraph:
    """An ONNX Runtime CPU session over an exported file (or its bytes), called like the TorchScript graph.

    ONNX Runtime's pool threads spin-wait between the operators of a run, which keeps its own call fast,
    and by default go on spinning for a while after the run returns, taking cores from whatever the
    worker does next (the NMS and response that follow, another path's call). ``stop_spinning`` (the
    default) makes them stop when the run returns (``session.force_spinning_stop``); see
    ``bench/checks/ort_spinning.py``."""

    def __init__(self, path: Path | bytes, threads: int | None = None, stop_spinning: bool = True):
        ort = _require("onnxruntime", extra="onnxruntime")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        if stop_spinning:
            options.add_session_config_entry("session.force_spinning_stop", "1")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            source = path if isinstance(path, bytes) else str(path)
            self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types
            what = "the exported graph" if isinstance(path, bytes) else str(path)
            raise SagedetError(f"{what}: ONNX Runtime cannot load it: {error}") from error

    @property
    def input_shape(self) -> list:
        """The images input's shape as the file declares it: ints, and names or None for free sizes."""
        return list(self.session.get_inputs()[0].shape)

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores, boxes = self.session.run(OUTPUT_NAMES, {INPUT_NAMES[0]: images.detach().cpu().contiguous().numpy()})
        return torch.from_numpy(scores), torch.from_numpy(boxes)
