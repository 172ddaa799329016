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

``SAGEDET_PRECISION`` (:mod:`sagedet.model.precision`) sets the arithmetic. ``auto`` (the default) runs
CUDA under bf16 (else fp16) autocast; on a CPU with bf16 instructions (AVX512_BF16 or AMX) it races
the eager and torchscript paths in bf16 against winograd and onnxruntime in float32 and keeps the
fastest; on other CPUs everything runs in float32, as above. ``float32`` runs every device in float32;
``bf16`` (CUDA with bf16 tensor cores, or any CPU) and ``fp16`` (CUDA) run only the eager and
torchscript paths, under that autocast (winograd and onnxruntime are float32 paths). Every path under
a reduced precision, auto's included, has its outputs checked against the float32 model's on the probe
batch when it is built: a path more than ``PRECISION_TOLERANCE`` (0.05 in a score or a box coordinate)
from float32 is left out. When no path is left, a worker under ``auto`` serves the model in float32
and its log line says why; one under a requested ``bf16`` or ``fp16`` stops ("cannot load the model")
rather than answer with other detections than its model's. On the development machine's Zen 4 (AVX512_BF16)
bf16 took 0.53-0.54x the float32 torchscript path's time for vgg-16 and resnet-50, 0.6-0.75x the fastest
float32 path's (docs/benchmarks.md); on CPUs without bf16 instructions it is emulated and slower, which
is why ``auto`` uses it only where the CPU has them.

``SAGEDET_INFERENCE_PATH=auto`` (the default) builds every path the worker has and keeps the
fastest: each runs a batch ``PROBE_ROUNDS`` times, the paths taking turns, after one untimed call
each; the lowest median wins. The batch is one image, or with request batching on the largest batch
the worker will run (the order can change with the batch: on the development CPU the winograd path
won vgg-16 at one image and ONNX Runtime at eight, bench/inference_throughput.py). Which wins
depends on the network, the machine and the run (docs/benchmarks.md has this project's 2-core AVX2
CPU); measuring at start keeps the choice right on other hardware. A path that fails to build is
left out and named in the worker's log line.

In float32 every path other than eager is checked against eager when it is built: its first call on
the probe batch (the untimed call the probe makes anyway) must give eager's outputs on that batch within
``IDENTITY_TOLERANCE`` (1e-2). This is an identity check, not a precision check: a
``model.onnx`` left in the folder by another model (another training run, seed or image side) differs
by far more (``IDENTITY_TOLERANCE``) or cannot take the model's images at all, while every conversion
of the folder's own weights stays well inside it (float32 rounding: the export's 1e-3 holds). Under
``auto`` a path that disagrees or raises on the probe batch is left out, named with the reason in the worker's log,
and the fastest of the others serves; a path named by ``SAGEDET_INFERENCE_PATH`` that fails the check
stops the worker (:class:`~sagedet.errors.ModelError`, "cannot load the model"), as one that cannot be
built does: whichever worker started, the folder's ``model.safetensors`` is the model that answers.
Under ``auto`` the check adds only the comparison to the start (1-3 ms a path); a requested path adds
one eager call and one of its own (~0.1 s for mobilenet-v3, ~0.6 s for resnet-50 at 300 px on one
thread of the development CPU).
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

from sagedet.errors import ConfigError, ModelError, SagedetError
from sagedet.model.fused_head import fuse_head
from sagedet.model.precision import NAMES, exact_float32, inference_dtype
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
IDENTITY_TOLERANCE = 1e-2
"""Largest difference, in any score or box coordinate, between a path's outputs on the probe batch and
eager's in float32 (CPU): 10x the export tolerance (``sagedet.export.writer.TOLERANCE``), as the
probe's random pixels are not the export check's. On the probe batch (1 and 4 images) the paths built
from the folder's weights came within 1.7e-4 of eager (torchscript, winograd and onnxruntime;
mobilenet-v3, vgg-16 and resnet-50 with trained-like weights at 160, 268 and 257 px), the same
network with another seed's weights 0.65 to 1.0 away."""
PRECISION_TOLERANCE = 0.05
"""Largest difference from the float32 model's outputs, in any score or box coordinate (scores are
probabilities, boxes fractions of the image), allowed to a path under bf16 or fp16 (requested, or
``auto``'s on CUDA and on CPUs with bf16 instructions): bf16 keeps 8 bits of mantissa, rounding by up to 2^-9 per operation through ~20
layers. vgg-16 and resnet-50 with trained-like weights (tests/trained_like.py) at 300 px moved by at most
0.022 (scores) and 0.004 (boxes) under bf16 on the development CPU, on four real-looking images (scratch);
tests/serve/test_serve_precision.py holds them to this tolerance at 268 and 257 px, on such images and on
the probe batch. mobilenet-v3 with such weights (every convolution random) moved by 0.31 (eager) and 0.62
(torchscript) on the probe batch at 300 px, so such a model is refused under bf16 (scratch); with only its
head scaled it moved by 0.003 (bench/inference_latency.py). A mobilenet-v3 really trained (the
acceptance recipe at 128 px, validation mAP 0.979) moved by 0.012 (scores) and 0.0024 (boxes) on its 60
validation images and 0.005 on the probe batch, and its VOC mAP went from 0.9790 to 0.9787 (scratch,
sixteenth session): the random convolutions, not the network, were the cause. The same figure as the CUDA
tests' autocast tolerance."""

Graph = Callable[[Tensor], tuple[Tensor, Tensor]]


@dataclass
class Engine:
    """The path a worker runs, and what was measured when it was chosen (ms per image by path)."""

    name: str
    run: Graph
    timings: dict[str, float] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # paths left out, each with why (a phrase)
    probe_batch: int = 1  # the batch size the timings were measured on
    precision: str = "float32"  # the arithmetic the path runs in: float32, bf16 or fp16 (autocast)
    precisions: dict[str, str] = field(default_factory=dict)  # each timed path's, when they differ

    def __call__(self, images: Tensor) -> tuple[Tensor, Tensor]:
        return self.run(images)

    def describe(self) -> str:
        on = f" in batches of {self.probe_batch}" if self.probe_batch > 1 else ""
        details = [f"measured per image{on}: " + ", ".join(
            f"{name}{f' in {self.precisions[name]}' if name in self.precisions else ''} {ms:.1f} ms"
            for name, ms in self.timings.items())] if self.timings else []
        details += [f"{name} {why}" for name, why in self.failed.items()]
        return f"{self.name} path in {self.precision}" + (f" ({'; '.join(details)})" if details else "")


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def eager_path(model: SSDDetector, device: torch.device, dtype: torch.dtype | None = None) -> Graph:
    """The model as it is, under ``dtype``'s autocast (None: float32)."""
    channels_last = device.type == "cuda" or dtype is not None  # oneDNN's bf16 convolutions want NHWC too
    if channels_last:
        model = model.to(memory_format=torch.channels_last)

    def run(images: Tensor) -> tuple[Tensor, Tensor]:
        with _autocast(device, dtype):
            cls_logits, box_codes = model(images.contiguous(memory_format=torch.channels_last)
                                          if channels_last else images)
        return model.decode(cls_logits.float(), box_codes.float())
    return run


def torchscript_path(model: SSDDetector, device: torch.device, dtype: torch.dtype | None = None) -> Graph:
    from sagedet.export import torchscript

    with _autocast(device, dtype), warnings.catch_warnings():
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
    return torchscript_path(converted, device)  # float32: Winograd's transforms need its precision


def onnxruntime_path(model: SSDDetector, model_dir: Path, threads: int | None) -> Graph:
    from sagedet.export.onnx import OnnxRuntimeGraph, to_bytes

    exported = model_dir / ONNX_FILE
    if not exported.is_file():
        return OnnxRuntimeGraph(to_bytes(model), threads)
    graph = OnnxRuntimeGraph(exported, threads)
    takes, side = graph.input_shape, model.image_shape
    if len(takes) != 4 or any(isinstance(n, int) and n != want for n, want in zip(takes[1:], (3, side, side))):
        raise ModelError(f"{exported} takes images of shape {_shape(takes)}, but {model_dir / 'model.json'} has "
                         f"image_shape {side} (images of shape (batch, 3, {side}, {side})); {_STALE}")
    return graph


_STALE = ("a model.onnx left from another model? Export it again from this folder (sagedet export --model DIR "
          "--output DIR --format onnx) or remove it")


def _shape(dims: list) -> str:
    return "(" + ", ".join(str(n) if isinstance(n, int) else str(n or "?") for n in dims) + ")"


def probe_images(image_shape: int, device: torch.device, batch: int = 1) -> Tensor:
    """The probe batch: the same random pixels in every worker."""
    return torch.rand(batch, 3, image_shape, image_shape, generator=torch.Generator().manual_seed(0)).to(device)


@torch.inference_mode()
def disagreement(graph: Graph, images: Tensor, want: tuple[Tensor, Tensor], tolerance: float) -> str | None:
    """Why ``graph`` does not give eager's outputs ``want`` on ``images``, or None when it does."""
    try:
        got = graph(images)
        if [tuple(t.shape) for t in got] != [tuple(t.shape) for t in want]:
            return (f"it gives scores and boxes of shapes {tuple(got[0].shape)} and {tuple(got[1].shape)} where the "
                    f"model gives {tuple(want[0].shape)} and {tuple(want[1].shape)}")
        difference = max((a.float().to(b.device) - b.float()).abs().max().item() for a, b in zip(got, want))
    except Exception as error:  # noqa: BLE001 - ONNX Runtime raises its own exception types
        return f"it fails on the model's images: {type(error).__name__}: {' '.join(str(error).split())}"
    if not difference <= tolerance:
        return (f"its outputs differ from the model's by {difference:.3g} on the probe images (allowed "
                f"{tolerance:g})")
    return None


def _refusal(name: str, model_dir: Path, why: str, precision: str = "auto",
             dtype: torch.dtype | None = None) -> str:
    exported = model_dir / ONNX_FILE
    if name == "onnxruntime" and exported.is_file():
        return f"{exported} is not the model in {model_dir / 'model.safetensors'}: {why}; {_STALE}"
    if dtype is not None:
        under = f"under SAGEDET_PRECISION={precision}" if precision != "auto" else f"in {NAMES[dtype]} autocast"
        return f"the {name} path {under} does not answer as the float32 model does: {why}"
    return f"the {name} path does not answer as the model does: {why}"


def available_paths(device: torch.device, model: SSDDetector, dtype: torch.dtype | None = None) -> list[str]:
    """The paths this worker can build: winograd needs the CPU and eligible layers, onnxruntime the
    CPU and the package; both compute in float32, so a reduced precision ``dtype`` requested on the
    CPU leaves eager and torchscript."""
    names = ["eager", "torchscript"]
    if device.type == "cpu" and dtype is None:
        if any(eligible(module) for module in model.modules()):
            names.append("winograd")
        try:
            import onnxruntime  # noqa: F401
            names.append("onnxruntime")
        except ImportError:
            pass
    return names


def build_engine(choice: str, model: SSDDetector, model_dir: Path, device: torch.device,
                 threads: int | None = None, probe_batch: int = 1, precision: str = "auto") -> Engine:
    """The path ``choice`` names, or with ``auto`` the fastest path measured here on batches of
    ``probe_batch`` images, in the arithmetic ``precision`` (``SAGEDET_PRECISION``) names.

    ``auto``'s reduced precision (autocast on a GPU, bf16 on a CPU with bf16 instructions) is held to the
    float32 model as a requested one is; on the CPU the float32-only paths (winograd, onnxruntime) race
    the bf16 ones. A model that no path serves within ``PRECISION_TOLERANCE`` is served in float32, and
    the log line says why.
    """
    dtype = inference_dtype(precision, device)
    exact_float32(device)  # no TF32 in the float32 paths nor in the reference reduced precision is held to
    if precision != "auto" or dtype is None:
        return _build_engine(choice, model, model_dir, device, threads, probe_batch, dtype, precision)
    try:
        return _build_engine(choice, model, model_dir, device, threads, probe_batch, dtype, precision)
    except _ReducedPrecisionRefused as error:  # other refusals (a stale model.onnx) would only repeat
        engine = _build_engine(choice, model, model_dir, device, threads, probe_batch, None, precision)
        engine.failed[NAMES[dtype]] = f"left out, serving in float32: {error}"
        return engine


class _ReducedPrecisionRefused(ModelError):
    """No path, or not the path asked for, answers within ``PRECISION_TOLERANCE`` of the float32 model in
    reduced precision: under ``auto``, build_engine serves in float32 instead."""


def _build_engine(choice: str, model: SSDDetector, model_dir: Path, device: torch.device, threads: int | None,
                  probe_batch: int, dtype: torch.dtype | None, precision: str) -> Engine:
    """``build_engine`` in one arithmetic: float32 (``dtype`` None) or ``dtype``'s autocast, which
    every path, eager's included, must run within ``PRECISION_TOLERANCE`` of the float32 model. Under
    ``auto`` on the CPU the float32-only paths join in float32."""
    dtypes = dict.fromkeys(available_paths(device, model, dtype), dtype)
    if precision == "auto" and dtype is not None:
        dtypes.update({name: None for name in available_paths(device, model) if name not in dtypes})
    names = list(dtypes)
    if choice != "auto" and choice not in names:
        if choice in ("winograd", "onnxruntime") and precision != "auto" and dtype is not None and device.type == "cpu":
            why = f"it computes in float32 only, and SAGEDET_PRECISION={precision} asks for {NAMES[dtype]}"
        else:
            why = {"onnxruntime": "it needs the CPU and the onnxruntime package (pip install "
                                  "'sagedet[onnxruntime]')",
                   "winograd": f"it needs the CPU and 3x3 convolutions whose channels in and out have a harmonic "
                               f"mean of {MIN_LARGE_MAP_CHANNELS} or more (vgg-16, resnet-50)"}.get(choice, "unknown path")
        raise ConfigError(f"SAGEDET_INFERENCE_PATH={choice}: not available in this worker: {why}; "
                          f"available: auto, {', '.join(names)}")
    builders: dict[str, Callable[[], Graph]] = {
        "eager": lambda: eager_path(model, device, dtypes["eager"]),
        "torchscript": lambda: torchscript_path(model, device, dtypes["torchscript"]),
        "winograd": lambda: winograd_path(model, device),
        "onnxruntime": lambda: onnxruntime_path(model, model_dir, threads),
    }
    # The reference is the float32 model (eager). A path in reduced precision is held to it within
    # PRECISION_TOLERANCE; a float32 path within IDENTITY_TOLERANCE (an identity check: see there).
    def tolerance(name: str) -> float:
        return PRECISION_TOLERANCE if dtypes[name] is not None else IDENTITY_TOLERANCE

    def refusal(name: str, why: str) -> str:
        return _refusal(name, model_dir, why, precision, dtypes[name])

    if choice == "eager" and dtype is None:
        return Engine(choice, builders[choice](), precision="float32")
    images = probe_images(model.image_shape, device, probe_batch)
    if choice != "auto":
        with torch.inference_mode():
            want = eager_path(model, device, None)(images)
        try:
            graph = builders[choice]()
        except SagedetError as error:  # a model.onnx that does not fit or cannot be read
            raise type(error)(f"SAGEDET_INFERENCE_PATH={choice}: {error}") from error
        if why := disagreement(graph, images, want, tolerance(choice)):
            refused = ModelError if dtypes[choice] is None else _ReducedPrecisionRefused
            raise refused(f"SAGEDET_INFERENCE_PATH={choice}: {refusal(choice, why)}")
        return Engine(choice, graph, precision=NAMES[dtypes[choice]])
    graphs, failed = {}, {}
    for name in names:
        try:
            graphs[name] = builders[name]()
        except Exception as error:  # noqa: BLE001 - auto falls back to the paths that build; eager always does
            if name == "eager":
                raise
            failed[name] = f"could not be built ({type(error).__name__}: {error})"
    # The first, untimed call of each path (it allocates, tunes and optimizes) is its check.
    with torch.inference_mode():
        want = (graphs["eager"] if dtypes["eager"] is None else eager_path(model, device, None))(images)
    for name in [name for name in graphs if not (name == "eager" and dtypes[name] is None)]:
        if why := disagreement(graphs[name], images, want, tolerance(name)):
            failed[name] = f"left out: {refusal(name, why)}"
            del graphs[name]
    if not graphs:
        paths = "; ".join(f"{name} {why}" for name, why in failed.items())
        if precision == "auto":  # build_engine serves the model in float32 instead
            raise _ReducedPrecisionRefused(f"no inference path answers within {PRECISION_TOLERANCE:g} of the float32 model in "
                             f"{NAMES[dtype]}: {paths}")
        raise ModelError(f"SAGEDET_PRECISION={precision}: no inference path answers within {PRECISION_TOLERANCE:g} "
                         f"of the float32 model: {paths}; serve this model in float32 (SAGEDET_PRECISION=float32)")
    timings = measure(graphs, model.image_shape, device, batch=probe_batch, first_calls=False)
    best = min(timings, key=timings.get)
    precisions = {name: NAMES[dtypes[name]] for name in timings}
    return Engine(best, graphs[best], timings, failed, probe_batch, precisions[best],
                  precisions if len(set(precisions.values())) > 1 else {})


@torch.inference_mode()
def measure(graphs: dict[str, Graph], image_shape: int, device: torch.device, rounds: int = PROBE_ROUNDS,
            batch: int = 1, pause: float = PROBE_PAUSE_SECONDS, first_calls: bool = True) -> dict[str, float]:
    """Median milliseconds per image of each graph on the probe batch of ``batch`` images, the graphs
    taking turns, each timed call ``pause`` seconds after the previous one ended. ``first_calls``: make
    each graph's untimed first call here (``build_engine`` made them already, checking the outputs)."""
    images = probe_images(image_shape, device, batch)
    seconds: dict[str, list[float]] = {name: [] for name in graphs}
    for graph in graphs.values() if first_calls else ():
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
