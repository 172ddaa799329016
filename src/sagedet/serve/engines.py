"""The inference paths a worker can run its model by, and the choice of the fastest.

Every path maps a batch of images (B, 3, S, S), float in [0, 1] on the model's device, to the
exported graph's outputs (:mod:`sagedet.export.graph`): scores (B, A, C) and normalized boxes
(B, A, 4); NMS follows on the same device (:func:`sagedet.model.ssd.select_detections`).

=============== ==================================================================================
eager           the PyTorch model as trained; on CUDA in channels-last under bf16 (else fp16)
                autocast
torchscript     the graph traced and frozen (batch normalization folded into the convolutions),
                in channels-last; on CUDA traced under the same autocast
winograd        the torchscript path with the deep 3x3 convolutions computed by Winograd
                F(4x4, 3x3) or, on large maps, F(6x6, 3x3) (:mod:`sagedet.model.winograd`: fewer
                multiplications, answers equal to fp32 rounding); CPU only, and only for models
                that have such layers (vgg-16, resnet-50; not mobilenet-v3)
onnxruntime     ONNX Runtime's CPU provider (graph optimizations on) running ``model.onnx`` from
                the model folder when ``sagedet export`` wrote one there, else the graph exported
                in memory when the worker starts (torch's TorchScript-based exporter, ~1 s); CPU
                only, and only when the onnxruntime package is installed (it is in the images)
=============== ==================================================================================

``SAGEDET_INFERENCE_PATH=auto`` (the default) builds every path the worker has and keeps the
fastest: each runs a batch ``PROBE_ROUNDS`` times, the paths taking turns, after one untimed call
each; the lowest median wins. The batch is one image, or with request batching on the largest batch
the worker will run (the order can change with the batch: on the development CPU the winograd path
won vgg-16 at one image and ONNX Runtime at eight, bench/inference_throughput.py). Which wins
depends on the network, the machine and the run (docs/benchmarks.md has this project's 2-core AVX2
CPU); measuring at start keeps the choice right on other hardware. A path that fails to build is
left out and named in the worker's log line.
"""

from __future__ import annotations

import copy
import statistics
import time
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from sagedet.errors import ConfigError
from sagedet.model.fused_head import fuse_head
from sagedet.model.precision import amp_dtype
from sagedet.model.ssd import SSDDetector
from sagedet.model.winograd import MIN_LARGE_MAP_CHANNELS, eligible, use_winograd

ONNX_FILE = "model.onnx"
PROBE_ROUNDS = 5
PROBE_PAUSE_SECONDS = 0.1
"""How long the probe waits before each timed call, so that no path is timed while the previous one's
threads still run: ONNX Runtime's pool threads spin-waited after a run (with more than one thread a
worker) and slowed the next torch call by up to 1.6x on a 2-core Xeon (bench/machine.py), which
tilted the choice towards ONNX Runtime; since the tenth session they stop when the run returns
(``OnnxRuntimeGraph``), but torch's OpenMP threads still spin a few ms after a call (4-9 ms of CPU in
the 0.1 s after a convolution, scratch). With 4 paths it adds 2 s to a CPU worker's start."""

Graph = Callable[[Tensor], tuple[Tensor, Tensor]]


@dataclass
class Engine:
    """The path a worker runs, and what was measured when it was chosen (ms per image by path)."""

    name: str
    run: Graph
    timings: dict[str, float] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # paths that could not be built, and why
    probe_batch: int = 1  # the batch size the timings were measured on

    def __call__(self, images: Tensor) -> tuple[Tensor, Tensor]:
        return self.run(images)

    def describe(self) -> str:
        measured = ", ".join(f"{name} {ms:.1f} ms" for name, ms in self.timings.items())
        failed = "".join(f"; {name} could not be built ({why})" for name, why in self.failed.items())
        on = f" in batches of {self.probe_batch}" if self.probe_batch > 1 else ""
        return f"{self.name} path" + (f" (measured per image{on}: {measured}{failed})" if measured else "")


def _autocast(device: torch.device):
    dtype = amp_dtype(device)
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def eager_path(model: SSDDetector, device: torch.device) -> Graph:
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)

    def run(images: Tensor) -> tuple[Tensor, Tensor]:
        with _autocast(device):
            cls_logits, box_codes = model(images.contiguous(memory_format=torch.channels_last)
                                          if device.type == "cuda" else images)
        return model.decode(cls_logits, box_codes)
    return run


def torchscript_path(model: SSDDetector, device: torch.device) -> Graph:
    from sagedet.export import torchscript

    with _autocast(device), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch marks TorchScript deprecated; here it is still among the fastest
        graph = torchscript.trace(model, device, channels_last=True)

    def run(images: Tensor) -> tuple[Tensor, Tensor]:
        scores, boxes = graph(images.contiguous(memory_format=torch.channels_last))
        return scores.float(), boxes.float()
    return run


def winograd_path(model: SSDDetector, device: torch.device) -> Graph:
    converted = copy.deepcopy(model)
    converted.head = fuse_head(converted.head)  # before the conversion, which then takes the stacked convolutions
    use_winograd(converted)
    return torchscript_path(converted, device)


def onnxruntime_path(model: SSDDetector, model_dir: Path, threads: int | None) -> Graph:
    from sagedet.export.onnx import OnnxRuntimeGraph, to_bytes

    exported = model_dir / ONNX_FILE
    return OnnxRuntimeGraph(exported if exported.is_file() else to_bytes(model), threads)


def available_paths(device: torch.device, model: SSDDetector) -> list[str]:
    """The paths this worker can build: winograd needs the CPU and eligible layers, onnxruntime the
    CPU and the package."""
    names = ["eager", "torchscript"]
    if device.type == "cpu":
        if any(eligible(module) for module in model.modules()):
            names.append("winograd")
        try:
            import onnxruntime  # noqa: F401
            names.append("onnxruntime")
        except ImportError:
            pass
    return names


def build_engine(choice: str, model: SSDDetector, model_dir: Path, device: torch.device,
                 threads: int | None = None, probe_batch: int = 1) -> Engine:
    """The path ``choice`` names, or with ``auto`` the fastest path measured here on batches of
    ``probe_batch`` images."""
    names = available_paths(device, model)
    if choice != "auto" and choice not in names:
        why = {"onnxruntime": "it needs the CPU and the onnxruntime package (pip install "
                              "'sagedet[onnxruntime]')",
               "winograd": f"it needs the CPU and 3x3 convolutions whose channels in and out have a harmonic "
                           f"mean of {MIN_LARGE_MAP_CHANNELS} or more (vgg-16, resnet-50)"}.get(choice, "unknown path")
        raise ConfigError(f"SAGEDET_INFERENCE_PATH={choice}: not available in this worker: {why}; "
                          f"available: auto, {', '.join(names)}")
    builders: dict[str, Callable[[], Graph]] = {
        "eager": lambda: eager_path(model, device),
        "torchscript": lambda: torchscript_path(model, device),
        "winograd": lambda: winograd_path(model, device),
        "onnxruntime": lambda: onnxruntime_path(model, model_dir, threads),
    }
    if choice != "auto":
        return Engine(choice, builders[choice]())
    graphs, failed = {}, {}
    for name in names:
        try:
            graphs[name] = builders[name]()
        except Exception as error:  # noqa: BLE001 - auto falls back to the paths that build; eager always does
            if name == "eager":
                raise
            failed[name] = f"{type(error).__name__}: {error}"
    timings = measure(graphs, model.image_shape, device, batch=probe_batch)
    best = min(timings, key=timings.get)
    return Engine(best, graphs[best], timings, failed, probe_batch)


@torch.inference_mode()
def measure(graphs: dict[str, Graph], image_shape: int, device: torch.device,
            rounds: int = PROBE_ROUNDS, batch: int = 1, pause: float = PROBE_PAUSE_SECONDS) -> dict[str, float]:
    """Median milliseconds per image of each graph on a batch of ``batch`` images, the graphs taking
    turns, each timed call ``pause`` seconds after the previous one ended."""
    images = torch.rand(batch, 3, image_shape, image_shape, generator=torch.Generator().manual_seed(0)).to(device)
    seconds: dict[str, list[float]] = {name: [] for name in graphs}
    for name, graph in graphs.items():
        graph(images)  # untimed: first calls allocate, tune and (TorchScript) optimize
    for _ in range(rounds):
        for name, graph in graphs.items():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            time.sleep(pause)
            started = time.perf_counter()
            scores, _ = graph(images)
            scores.sum().item()  # waits for the device
            seconds[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) * 1000 / batch for name, values in seconds.items()}
