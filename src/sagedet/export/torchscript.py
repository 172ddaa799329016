"""TorchScript: the :class:`~sagedet.export.graph.DetectionGraph` traced, then frozen (weights and
buffers folded in as constants, batch normalization folded into the convolutions)."""

from __future__ import annotations

from pathlib import Path

import torch

from sagedet.export.graph import DetectionGraph
from sagedet.model.precision import cudnn_tf32
from sagedet.model.ssd import SSDDetector


def trace(model: SSDDetector, device: torch.device, channels_last: bool = False,
          optimize_for_cpu: bool = False) -> torch.jit.ScriptModule:
    """The model's graph traced on ``device`` with a batch of two and frozen. ``optimize_for_cpu``
    also applies ``torch.jit.optimize_for_inference`` (oneDNN convolutions; CPU only, the result
    is tied to this machine's torch, so it is never saved).

    Tracing writes cuDNN's settings into each convolution as constants, which then hold wherever the
    graph runs: float32 convolutions are traced as IEEE float32 (no TF32, whatever the process's
    default), so that a graph run on CUDA answers as the float32 model does; cuDNN's autotuning is
    the tracing process's (the server's on CUDA: on; ``sagedet export``'s: off)."""
    graph = DetectionGraph(model).eval().to(device)  # the graph's own copy: .to() leaves the caller's model
    example = torch.rand(2, 3, model.image_shape, model.image_shape, device=device)
    if channels_last:
        graph = graph.to(memory_format=torch.channels_last)
        example = example.contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), cudnn_tf32(False):
        traced = torch.jit.trace(graph, example, check_trace=False)
        if optimize_for_cpu:
            return torch.jit.optimize_for_inference(traced)
        return torch.jit.freeze(traced)


def save(model: SSDDetector, path: Path) -> Path:
    """Write the frozen CPU graph; ``torch.jit.load(path, map_location=...)`` runs it anywhere."""
    trace(model, torch.device("cpu")).save(str(path))  # trace copies: the caller's model stays where it is
    return path
