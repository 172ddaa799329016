"""``sagedet export``: a trained model's TorchScript and ONNX files, each checked against eager.

Writes into the output folder, for the formats asked for:

- ``model.torchscript.pt``: the frozen graph (``torch.jit.load(path, map_location=device)``);
- ``model.onnx``: ONNX opset 18, weights inside, batch size free;
- ``export.json``: what the files take and give (``graph.INPUT_NAMES``/``OUTPUT_NAMES`` with their
  shapes), the image side, the classes and the NMS threshold the model was validated with, and the
  largest difference from eager found by the check.

Each written file is loaded back and run on ``CHECK_IMAGES`` random images next to the eager
model; a difference in any score or box coordinate above ``TOLERANCE`` fails the export (the file
is removed) instead of leaving a graph that answers differently. A ``model.onnx`` written into the
model folder itself is what the server's ``onnxruntime`` path runs.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from sagedet.artifacts import atomic_write
from sagedet.errors import ConfigError, ModelError
from sagedet.export import onnx, torchscript
from sagedet.export.graph import INPUT_NAMES, OUTPUT_NAMES
from sagedet.model.saved import load_detector, model_dir_of

FORMATS = {"torchscript": "model.torchscript.pt", "onnx": "model.onnx"}
TOLERANCE = 1e-3
"""Largest difference allowed between an exported graph's outputs and eager PyTorch's: scores are
probabilities and boxes fractions of the image side, so 1e-3 is a tenth of a pixel at 100 pixels.
Folding batch normalization into the convolutions changes float32 rounding: differences of 1e-4
to 4e-4 were seen with random weights whose logits reach 19 (trained models' are smaller)."""
CHECK_IMAGES = 3
MANIFEST = "export.json"


def _load(name: str, path: Path) -> Callable:
    """The written file, loaded back as a callable graph on the CPU."""
    return torch.jit.load(str(path), map_location="cpu") if name == "torchscript" else onnx.OnnxRuntimeGraph(path)


def largest_difference(graph: Callable, images: torch.Tensor, expected: tuple[torch.Tensor, torch.Tensor]) -> float:
    with torch.inference_mode():
        found = graph(images)
    return max((a.float() - b.float()).abs().max().item() for a, b in zip(found, expected))


def export_model(model: Path, output_dir: Path, formats: Sequence[str] = tuple(FORMATS)) -> dict:
    """Write the files for ``formats`` and the manifest; return the manifest."""
    unknown = [name for name in formats if name not in FORMATS]
    if unknown or not formats:
        raise ConfigError(f"--format {' '.join(unknown) or '(none)'}: expected one or more of {', '.join(FORMATS)}")
    with tempfile.TemporaryDirectory(prefix="sagedet-export-") as work:
        detector, metadata = load_detector(model_dir_of(model, Path(work)))
    output_dir.mkdir(parents=True, exist_ok=True)
    side = detector.image_shape
    images = torch.rand(CHECK_IMAGES, 3, side, side, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = detector.decode(*detector(images))
    files = {}
    for name in dict.fromkeys(formats):
        path = output_dir / FORMATS[name]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's deprecation notices for TorchScript
            (torchscript if name == "torchscript" else onnx).save(detector, path)
            difference = largest_difference(_load(name, path), images, expected)
        if not difference <= TOLERANCE:
            path.unlink(missing_ok=True)
            raise ModelError(f"the exported {name} graph differs from the eager model by {difference:.3g} "
                             f"(allowed {TOLERANCE:g}); nothing written for it")
        files[name] = {"file": path.name, "largest_difference_from_eager": difference}
    manifest = {
        "inputs": {INPUT_NAMES[0]: {"dtype": "float32", "shape": ["batch", 3, side, side],
                                    "meaning": "RGB in [0, 1], the whole image resized to the square side"}},
        "outputs": {
            OUTPUT_NAMES[0]: {"dtype": "float32", "shape": ["batch", "default_boxes", detector.num_classes],
                              "meaning": "class probabilities without background; column = class_id"},
            OUTPUT_NAMES[1]: {"dtype": "float32", "shape": ["batch", "default_boxes", 4],
                              "meaning": "xmin, ymin, xmax, ymax as fractions of the image's width and height"},
        },
        "default_boxes": int(detector.anchors.shape[0]),
        "postprocessing": "per-class NMS (sagedet.model.ssd.select_detections) is not in the graph",
        "base_network": metadata["base_network"], "image_shape": side, "num_classes": detector.num_classes,
        "class_names": metadata.get("class_names"), "nms_threshold": metadata.get("nms_threshold", 0.45),
        "tolerance": TOLERANCE, "files": files, "torch": torch.__version__,
    }
    text = json.dumps(manifest, indent=2) + "\n"
    atomic_write(output_dir / MANIFEST, lambda f: f.write(text.encode()))
    return manifest
