"""Batched inference throughput (images/s) of each inference path the server has on a device, next to
torchvision's eager SSD fed the same batch in the same run.

The issue's GPU target is a figure of this kind: >= 1,000 images/s at batch 64 for vgg-16 or
resnet-50 at 300 on one H100. For each base network, one batch of ``--batch-size`` random S×S images
already on the device (decoding and resizing left out, the same for every row), each row timed over
``--iterations`` calls after ``--warmup`` calls, the paths and the peer taking turns call by call
(the machine's speed drifts; turns make a drift hit every row alike):

- **torchvision eager**: torchvision's ``SSD`` in eval mode on the batch as a list of images (its
  transform, model and per-class NMS): ``ssd300_vgg16`` for vgg-16 below 512 pixels, else its SSD
  class around a copy of our base network and head (the peer of ``bench/train_throughput.py``); on
  CUDA a second row runs it under the same autocast as ours (bf16 where the GPU has it), so that the
  ratio is not only the number format;
- **sagedet <path>**: each path ``sagedet.serve.engines`` can build on the device (eager,
  torchscript, and on the CPU winograd and onnxruntime), built by ``build_engine`` as a worker
  builds it, followed by the server's NMS (``select_detections``).

Each call ends with a synchronization (CUDA): the detections are ready on the device. On CUDA the
run uses the server's settings: cuDNN's autotuning on, and float32 as IEEE float32 (no TF32) for our
paths and the reference; torchvision's float32 row runs at torch's default, TF32 convolutions. The weights are random (batch-normalization statistics included) so that scores vary as
a trained model's do. Columns: median ms per batch, images/s (batch over the median), the ratio of
images/s to torchvision's fp32 row, the largest score or box difference from our eager fp32 outputs
(on CUDA the autocast paths differ by bf16 rounding), and on CUDA the memory one call allocates at
its peak, beyond what is already allocated (models, batch). Markdown
on stdout, progress on stderr.

    .venv/bin/python bench/inference_throughput.py [--device cuda] [--batch-size 64]
        [--networks vgg-16 resnet-50 mobilenet-v3] [--image-shape 300] [--iterations 20] [--warmup 3]
        [--glibc-malloc-defaults]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from inference_latency import NMS_THRESHOLD, log, randomize, taking_turns
from machine import add_malloc_option, set_malloc
from train_throughput import command_line, machine_lines, torchvision_peer

from sagedet.model.precision import amp_dtype, cudnn_tf32, exact_float32
from sagedet.model.ssd import build_ssd, select_detections
from sagedet.sagemaker.hyperparameters import BASE_NETWORKS
from sagedet.serve.engines import available_paths, build_engine


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def alternating_medians(calls: dict[str, Callable[[], object]], iterations: int, warmup: int,
                        device: torch.device) -> dict[str, float]:
    """Median seconds per call of each callable, each call waiting for the device: ``taking_turns``
    after ``warmup`` calls each, each timed call after its quiet pause (ONNX Runtime is among the paths)."""
    def waited(call: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            call()
            synchronize(device)
        return run

    times = taking_turns({name: waited(call) for name, call in calls.items()}, iterations, warmup,
                         pause=device.type == "cpu")
    return {name: statistics.median(ms) / 1000 for name, ms in times.items()}


def peak_memory(call: Callable[[], object], device: torch.device) -> float | None:
    """MiB one call allocates at its peak beyond what was allocated before it (CUDA only)."""
    if device.type != "cuda":
        return None
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    call()
    synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20



def measure(network: str, args: argparse.Namespace, device: torch.device, tmp: Path) -> list[list[str]]:
    torch.manual_seed(0)
    model = randomize(build_ssd(network, args.num_classes, args.image_shape)).eval()
    peer, peer_name = torchvision_peer(network, model)
    peer = randomize(peer).eval().to(device)
    model.to(device)
    images = torch.rand(args.batch_size, 3, args.image_shape, args.image_shape,
                        generator=torch.Generator().manual_seed(1)).to(device)
    listed = list(images)
    autocast = amp_dtype(device)
    def peer_float32():
        with cudnn_tf32(True):  # torch's default for float32 on CUDA, which the run turns off for ours
            return peer(listed)
    tf32 = ", TF32 convolutions" if device.type == "cuda" else ""
    calls: dict[str, Callable[[], object]] = {f"torchvision eager ({peer_name}){tf32}": peer_float32}
    if autocast is not None:
        def peer_autocast():
            with torch.autocast(device.type, dtype=autocast):
                return peer(listed)
        calls[f"torchvision eager ({peer_name}), autocast {autocast}"] = peer_autocast
    differences: dict[str, float] = {}
    with torch.inference_mode():
        reference = model.decode(*model(images))
        for name in available_paths(device, model):
            log(f"{network}: building the {name} path")
            engine = build_engine(name, model, tmp, device)  # in the precision a worker's auto gives it
            graph, row = engine.run, f"sagedet {name} ({engine.precision})"
            scores, boxes = graph(images)
            differences[row] = max((scores.float() - reference[0]).abs().max().item(),
                                   (boxes.float() - reference[1]).abs().max().item())

            def call(graph=graph):
                return select_detections(*graph(images), NMS_THRESHOLD)
            calls[row] = call
        log(f"{network}: timing {len(calls)} rows, batch {args.batch_size}, {args.iterations} rounds")
        medians = alternating_medians(calls, args.iterations, args.warmup, device)
        peaks = {name: peak_memory(call, device) for name, call in calls.items()}
    peer_rate = args.batch_size / next(iter(medians.values()))
    rows = []
    for name, seconds in medians.items():
        rate = args.batch_size / seconds
        difference = f"{differences[name]:.1e}" if name in differences else ""
        peak = f"{peaks[name]:.0f}" if peaks[name] is not None else ""
        rows.append([network, name, f"{seconds * 1000:.1f}", f"{rate:.1f}", f"{rate / peer_rate:.2f}",
                     difference, peak])
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, help="images per call (default: 64 on CUDA, 8 on CPU)")
    parser.add_argument("--networks", nargs="+", choices=BASE_NETWORKS, default=list(BASE_NETWORKS))
    parser.add_argument("--image-shape", type=int, default=300)
    parser.add_argument("--num-classes", type=int, default=20)
    parser.add_argument("--iterations", type=int, default=20, help="timed rounds (one call per row each)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    add_malloc_option(parser)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available on this machine; use --device cpu")
    if args.batch_size is None:
        args.batch_size = 64 if device.type == "cuda" else 8
    if args.batch_size < 1 or args.iterations < 1 or args.warmup < 0:
        parser.error("--batch-size and --iterations must be >= 1, --warmup >= 0")
    malloc = set_malloc(args) if device.type == "cpu" else None  # as the server's workers
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":  # as the server's workers (Predictor.load, build_engine)
        torch.backends.cudnn.benchmark = True
        exact_float32(device)
    with tempfile.TemporaryDirectory(prefix="sagedet-throughput-") as tmp:
        rows = [row for network in args.networks for row in measure(network, args, device, Path(tmp))]
    print("\n".join([
        "### Batched inference throughput", "",
        f"`{command_line()}`", "",
        *machine_lines(device, malloc),
        f"- batch {args.batch_size} of {args.image_shape}x{args.image_shape} images on the device, "
        f"{args.num_classes} classes; {args.warmup} warm-up calls per row, then {args.iterations} rounds "
        "with the rows taking turns", "",
        "| network | path | median ms per batch | images/s | ratio to torchvision | largest difference from eager "
        "| peak MiB |",
        "|---|---|---|---|---|---|---|",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
