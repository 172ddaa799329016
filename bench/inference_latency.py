"""Single-image CPU inference latency of each inference path sagedet has, next to torchvision's eager SSD.

For each base network at one image size, one S×S image already decoded and resized (the same
pre-processing for every path, so it is left out), each path timed over ``--iterations`` calls
after ``--warmup`` calls, median and mean in milliseconds:

- **torchvision eager**: torchvision's ``SSD`` in eval mode on a list of one image (its transform,
  model, per-class NMS), the peer of ``bench/train_throughput.py`` (``ssd300_vgg16`` for vgg-16
  below 512 pixels, else torchvision's SSD class around a copy of our base network and head, with
  our parameter and default-box counts), same classes;
- **sagedet eager**: ``SSDDetector`` forward + decode + ``select_detections`` (NMS), contiguous
  (NCHW) and channels-last;
- **sagedet TorchScript**: the exported graph traced and frozen, in NCHW and in channels-last (the
  server's ``torchscript`` path), and traced and ``torch.jit.optimize_for_inference`` (oneDNN),
  then the same NMS;
- **sagedet winograd**: the server's ``winograd`` path (``sagedet.serve.engines.winograd_path``):
  the frozen channels-last graph with the deep 3x3 convolutions computed by Winograd F(4x4, 3x3) or F(6x6, 3x3)
  (``sagedet.model.winograd``), for the networks that have such layers (vgg-16, resnet-50);
- **sagedet ONNX Runtime**: ONNX Runtime's CPU provider with ORT_ENABLE_ALL, then the same NMS,
  on the graph a worker exports in memory when it starts (torch's TorchScript-based exporter) and
  on the file ``sagedet export`` writes (dynamo exporter, opset 18);
- **sagedet bf16** (``SAGEDET_PRECISION=bf16``, by default where the CPU has bf16 instructions,
  ``--bf16``/``--no-bf16`` to choose): the server's eager and torchscript paths under bf16 autocast
  (``sagedet.serve.engines.eager_path`` / ``torchscript_path``), which ``auto`` races against the
  float32 paths on such CPUs. Their difference from float32 eager is also given on a copy of the model
  whose head is scaled so that logits and box codes spread as a trained model's (the timed model's
  random logits reach the hundreds, where bf16's rounding saturates the softmax differently: a
  difference of ~1 there says nothing of a trained model);
- **the server's choice**: what ``build_engine("auto", ...)`` keeps, as a worker does at start under the
  default ``SAGEDET_PRECISION=auto`` and ``SAGEDET_INFERENCE_PATH=auto``, built on that scaled copy,
  since its bf16 paths are checked against float32.

The weights are random, batch normalization statistics included, so that scores vary as a trained
model's do (an untrained network's outputs are all but constant, which would make NMS trivial).
Each path's outputs are checked against eager (largest score and box difference printed). Each
path is timed in alternation with torchvision's model, call by call (since 2026-11-22; before, the
paths ran one after the other after torchvision's own block), and since the eighth session each timed
call starts after a 0.1 s pause (``machine.QUIET_SECONDS``): ONNX Runtime's pool threads spin on after
a call and had slowed the torchvision call that followed by up to 1.6x; the ratio column is the path's
median over torchvision's median from those alternating calls. The output is
markdown; progress goes to stderr.

    python bench/inference_latency.py [--networks vgg-16 resnet-50 mobilenet-v3] [--image-shape 300]
        [--num-classes 20] [--iterations 20] [--warmup 3] [--threads N] [--glibc-malloc-defaults]
        [--bf16 | --no-bf16]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from machine import add_malloc_option, quiet, run_lines, set_malloc
from torch import nn
from train_throughput import torchvision_peer

from sagedet.export import onnx as onnx_export
from sagedet.export import torchscript
from sagedet.model.ssd import SSDDetector, build_ssd, select_detections
from sagedet.model.winograd import eligible
from sagedet.model.precision import cpu_has_native_bf16
from sagedet.serve.engines import build_engine, eager_path, torchscript_path, winograd_path
from sagedet.sagemaker.hyperparameters import BASE_NETWORKS

NMS_THRESHOLD = 0.45


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random batch-normalization statistics and affine parameters, so that outputs vary."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                n = module.num_features
                module.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(n, generator=generator))
                module.weight.copy_(0.5 + torch.rand(n, generator=generator))
                module.bias.copy_(0.1 * torch.randn(n, generator=generator))
    return model


def timed(call: Callable[[], object], iterations: int, warmup: int) -> tuple[float, float]:
    for _ in range(warmup):
        call()
    seconds = []
    for _ in range(iterations):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds) * 1000, statistics.fmean(seconds) * 1000


def paths(model: SSDDetector, onnx_file: Path, threads: int) -> dict[str, Callable[[torch.Tensor], tuple]]:
    """name → a function from an image batch to (scores, boxes), each one of sagedet's paths."""
    cpu = torch.device("cpu")

    def eager(images):
        return model.decode(*model(images))

    def eager_channels_last(images):
        return model.decode(*model(images.contiguous(memory_format=torch.channels_last)))

    frozen = torchscript.trace(model, cpu)
    frozen_channels_last = torchscript.trace(model, cpu, channels_last=True)
    optimized = torchscript.trace(model, cpu, optimize_for_cpu=True)
    runtime = onnx_export.OnnxRuntimeGraph(onnx_file, threads)
    in_memory = onnx_export.OnnxRuntimeGraph(onnx_export.to_bytes(model), threads)
    winograd = ({"sagedet TorchScript frozen, channels-last, Winograd 3x3 layers (the server's winograd path)":
                 winograd_path(model, cpu)} if any(eligible(m) for m in model.modules()) else {})
    return {
        "sagedet eager (NCHW)": eager,
        "sagedet eager (channels-last)": eager_channels_last,
        "sagedet TorchScript frozen (NCHW)": frozen,
        "sagedet TorchScript frozen, channels-last (the server's torchscript path)":
            lambda images: frozen_channels_last(images.contiguous(memory_format=torch.channels_last)),
        "sagedet TorchScript optimize_for_inference": optimized,
        **winograd,
        "sagedet ONNX Runtime, graph exported in memory (the server's onnxruntime path)": in_memory,
        "sagedet ONNX Runtime, model.onnx from sagedet export": runtime,
    }


def bf16_paths(model: SSDDetector) -> dict[str, Callable[[torch.Tensor], tuple]]:
    """The server's paths under ``SAGEDET_PRECISION=bf16`` on the CPU (each on its own copy of the model:
    the eager path turns its model channels-last)."""
    cpu = torch.device("cpu")
    return {"sagedet eager, bf16 autocast, channels-last (SAGEDET_PRECISION=bf16)":
                eager_path(copy.deepcopy(model), cpu, torch.bfloat16),
            "sagedet TorchScript frozen under bf16 autocast, channels-last (SAGEDET_PRECISION=bf16)":
                torchscript_path(copy.deepcopy(model), cpu, torch.bfloat16)}


def calibrated(model: SSDDetector) -> SSDDetector:
    """A copy whose head's last layers are scaled so that class logits and box codes spread as a trained
    SSD's do: the tests' ``trained_like.calibrate``."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from trained_like import calibrate

    return calibrate(copy.deepcopy(model))


def largest_difference(got: tuple, want: tuple) -> float:
    return max((got[0] - want[0]).abs().max().item(), (got[1] - want[1]).abs().max().item())


def measure(network: str, args: argparse.Namespace, tmp: Path) -> list[list[str]]:
    torch.manual_seed(0)
    model = randomize(build_ssd(network, args.num_classes, args.image_shape)).eval()
    peer, peer_name = torchvision_peer(network, model)
    peer = randomize(peer).eval()
    image = torch.rand(1, 3, args.image_shape, args.image_shape, generator=torch.Generator().manual_seed(1))
    log(f"{network}: exporting ONNX")
    onnx_file = onnx_export.save(model, tmp / f"{network}.onnx")
    model.cpu().eval()
    rows = []
    with torch.inference_mode():
        log(f"{network}: torchvision {peer_name}")
        peer_ms, peer_mean = timed(lambda: peer([image[0]]), args.iterations, args.warmup)
        rows.append([network, f"torchvision eager ({peer_name})", f"{peer_ms:.1f}", f"{peer_mean:.1f}", "", "1.00",
                     ""])
        reference = model.decode(*model(image))
        differences = {}
        runs = paths(model, onnx_file, torch.get_num_threads())
        scaled = calibrated(model).eval()
        scaled_reference = scaled.decode(*scaled(image))
        if args.bf16:
            timed_bf16 = bf16_paths(model)
            runs.update(timed_bf16)
            for name, run in bf16_paths(scaled).items():
                differences[name] = (f"{largest_difference(timed_bf16[name](image), reference):.1e} (random head), "
                                     f"{largest_difference(run(image), scaled_reference):.1e} (calibrated head)")
        log(f"{network}: the server's auto choice")
        engine = build_engine("auto", scaled, tmp, torch.device("cpu"))  # bf16 held to float32: a trained head
        auto_row = f"the server's choice under SAGEDET_PRECISION=auto: {engine.name} in {engine.precision}"
        runs[auto_row] = engine.run
        differences[auto_row] = f"{largest_difference(engine(image), scaled_reference):.1e} (calibrated head)"
        for name, run in runs.items():
            log(f"{network}: {name}")
            difference = differences.get(name) or f"{largest_difference(run(image), reference):.1e}"

            def call(run=run):
                select_detections(*run(image), NMS_THRESHOLD)

            ours, alongside = alternated(call, lambda: peer([image[0]]), args.iterations, args.warmup)
            ms, beside = statistics.median(ours), statistics.median(alongside)
            rows.append([network, name, f"{ms:.1f}", f"{statistics.fmean(ours):.1f}", f"{beside:.1f}",
                         f"{ms / beside:.2f}", difference])
    return rows


def alternated(call: Callable[[], object], peer_call: Callable[[], object], iterations: int,
               warmup: int) -> tuple[list[float], list[float]]:
    """Milliseconds of ``call`` and of ``peer_call``, taking turns call by call, so that the shared
    machine's drifts in speed (10-40% within minutes here) hit both alike."""
    times = taking_turns({"ours": call, "peer": peer_call}, iterations, warmup, pause=True)
    return times["ours"], times["peer"]


def taking_turns(calls: dict[str, Callable[[], object]], iterations: int, warmup: int,
                 pause: bool = False) -> dict[str, list[float]]:
    """Milliseconds of each call, the calls taking turns one by one (:func:`alternated` for any number);
    with ``pause``, each timed call after a quiet pause (:func:`machine.quiet`), as ONNX Runtime's
    threads need."""
    for _ in range(warmup):
        for call in calls.values():
            call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(iterations):
        for name, call in calls.items():
            if pause:
                quiet()
            started = time.perf_counter()
            call()
            times[name].append((time.perf_counter() - started) * 1000)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--networks", nargs="+", choices=BASE_NETWORKS, default=list(BASE_NETWORKS))
    parser.add_argument("--image-shape", type=int, default=300)
    parser.add_argument("--num-classes", type=int, default=20)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                        help="time the paths under SAGEDET_PRECISION=bf16 (default: where the CPU has bf16 "
                             "instructions, AVX512_BF16 or AMX)")
    add_malloc_option(parser)
    args = parser.parse_args(argv)
    if args.bf16 is None:
        args.bf16 = cpu_has_native_bf16()
    malloc = set_malloc(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="sagedet-latency-") as tmp:
        rows = [row for network in args.networks for row in measure(network, args, Path(tmp))]
    print("\n".join([
        "### Single-image CPU inference latency", "", *run_lines(malloc),
        f"- {torch.get_num_threads()} torch threads; image {args.image_shape}x{args.image_shape}, "
        f"{args.num_classes} classes; {args.warmup} warm-up calls, {args.iterations} timed", "",
        "| network | path | median ms | mean ms | torchvision alongside, median ms | ratio to torchvision "
        "| largest difference from eager |",
        "|---|---|---|---|---|---|---|",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
