"""Where one image's time goes on the server's fastest CPU path, and how far the latency target
(0.5x torchvision's eager latency, issue 7) is from what the arithmetic allows on this machine.

For one network at 300 px: torchvision's eager peer and sagedet's ``winograd`` path (``torchscript``
for networks without eligible layers) timed in alternation, then the path profiled
(torch.profiler, self CPU time per operator, averaged over the profiled calls) and its time
split into 1x1 convolutions, other oneDNN convolutions, Winograd tile products, Winograd
transforms, copies and the rest. Next to it, the convolutions' arithmetic (counted on the model
with forward hooks) and this machine's fp32 matrix-multiply rate (a 2048x2048 ``torch.mm``): the
time every convolution would take at that rate, the converted 3x3 layers at Winograd's reduced
multiplication count for the tile the rule picks, with nothing else costing anything; and the same
with every stride-1 3x3 layer, converted or not, at F(6x6, 3x3)'s count. A bound above 0.5x says
the target cannot be met in fp32 on this machine by these algorithms at all; below it, the measured
1x1 time (already near that rate) says how much of the target it leaves to everything else.

    python bench/checks/latency_breakdown.py [--network resnet-50] [--iterations 10] [--threads N]
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.profiler import profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from inference_latency import NMS_THRESHOLD, alternated, randomize  # noqa: E402
from machine import add_malloc_option, set_malloc  # noqa: E402
from train_throughput import torchvision_peer  # noqa: E402

from sagedet.model.ssd import build_ssd, select_detections  # noqa: E402
from sagedet.model.winograd import computable, eligible, tile_for  # noqa: E402
from sagedet.serve.engines import torchscript_path, winograd_path  # noqa: E402

TARGET = 0.5


def convolution_flops(model: nn.Module, size: int) -> dict[str, float]:
    """GFLOP of one forward pass by kind: 1x1, 3x3 layers the winograd path converts (as direct
    convolutions, and at Winograd's multiplication count for the tile it uses), other."""
    flops: dict[str, float] = collections.defaultdict(float)
    hooks = []

    def record(module: nn.Conv2d):
        def hook(_, inputs, output) -> None:
            kh, kw = module.kernel_size
            direct = 2 * output.numel() * module.in_channels // module.groups * kh * kw / 1e9
            tile = tile_for(inputs[0].shape[2], inputs[0].shape[3], module.in_channels, module.out_channels)
            # any stride-1 3x3 layer could be computed by F(6x6, 3x3): 64 multiplications per 36 outputs, not 324
            at_6x6 = direct * 64 / 324 if computable(module) else direct
            if (kh, kw) == (1, 1):
                flops["1x1"] += direct
            elif eligible(module) and tile is not None:
                flops["3x3 converted"] += direct
                flops["3x3 converted, Winograd multiplications"] += direct * (tile + 2) ** 2 / (tile * tile * 9)
                flops["every stride-1 3x3 at F(6x6, 3x3)'s count"] += at_6x6
            else:
                flops["other"] += direct
                flops["every stride-1 3x3 at F(6x6, 3x3)'s count"] += at_6x6
        return hook

    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            hooks.append(module.register_forward_hook(record(module)))
    with torch.no_grad():
        model(torch.rand(1, 3, size, size))
    for hook in hooks:
        hook.remove()
    return flops


def category(name: str, shapes: list) -> str:
    if name in ("aten::mkldnn_convolution", "aten::_slow_conv2d_forward", "aten::_convolution"):
        weight = shapes[1] if len(shapes) > 1 else []
        return "1x1 convolutions" if len(weight) == 4 and weight[2:] == [1, 1] else "other convolutions"
    if name == "aten::bmm":
        first = shapes[0] if shapes else []
        # the transforms' second passes multiply by B^T repeated (alpha x alpha x alpha) or, for 6x6 tiles,
        # A^T repeated (tile x tile x alpha); the products by the transformed tiles (alpha², tiles, C_in)
        transform = len(first) == 3 and first[0] == first[1] and first[2] in (first[0], first[0] + 2) and first[2] <= 8
        return "Winograd transforms" if transform else "Winograd products"
    if name in ("aten::mm", "aten::matmul", "aten::addmm"):
        return "Winograd transforms"
    if name in ("aten::copy_", "aten::fill_", "aten::constant_pad_nd", "aten::cat", "aten::zero_"):
        return "copies and fills"
    return "everything else"


def matmul_gflops(size: int = 2048, iterations: int = 10) -> float:
    a, b = torch.rand(size, size), torch.rand(size, size)
    for _ in range(3):
        a @ b
    started = time.perf_counter()
    for _ in range(iterations):
        a @ b
    return 2 * size ** 3 * iterations / (time.perf_counter() - started) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--network", default="resnet-50")
    parser.add_argument("--image-shape", type=int, default=300)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    add_malloc_option(parser)
    args = parser.parse_args()
    malloc = set_malloc(args)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = randomize(build_ssd(args.network, 20, args.image_shape)).eval()
    peer, peer_name = torchvision_peer(args.network, model)
    peer = randomize(peer).eval()
    flops = convolution_flops(model, args.image_shape)
    converted = any(eligible(m) for m in model.modules())
    path_name = "winograd" if converted else "torchscript"
    graph = (winograd_path if converted else torchscript_path)(model, torch.device("cpu"))
    image = torch.rand(1, 3, args.image_shape, args.image_shape, generator=torch.Generator().manual_seed(1))

    def ours():
        select_detections(*graph(image), NMS_THRESHOLD)

    with torch.inference_mode():
        ours_times, peer_times = alternated(ours, lambda: peer([image[0]]), args.iterations, warmup=3)
        with profile(record_shapes=True) as profiled:
            for _ in range(args.iterations):
                ours()
    split: dict[str, float] = collections.defaultdict(float)
    for event in profiled.key_averages(group_by_input_shape=True):
        split[category(event.key, event.input_shapes)] += event.self_cpu_time_total / args.iterations / 1000
    rate = matmul_gflops()
    ours_ms, peer_ms = statistics.median(ours_times), statistics.median(peer_times)
    print(f"{args.network} at {args.image_shape}, {args.threads} threads; {malloc}")
    print(f"torchvision eager ({peer_name}): {peer_ms:.1f} ms; sagedet {path_name} path: {ours_ms:.1f} ms "
          f"({ours_ms / peer_ms:.2f}x); the target {TARGET}x is {TARGET * peer_ms:.1f} ms")
    print(f"fp32 matrix multiply (2048x2048, torch.mm): {rate:.0f} GFLOP/s\n")
    print(f"| sagedet {path_name} path, profiled | ms | share |")
    print("|---|---|---|")
    total = sum(split.values())
    for name, ms in sorted(split.items(), key=lambda item: -item[1]):
        print(f"| {name} | {ms:.1f} | {ms / total:.0%} |")
    print(f"| all (profiled; the profiler adds its own overhead) | {total:.1f} | |\n")
    print("| convolutions | GFLOP | ms at the matrix-multiply rate |")
    print("|---|---|---|")
    for name in ("1x1", "3x3 converted", "3x3 converted, Winograd multiplications", "other",
                 "every stride-1 3x3 at F(6x6, 3x3)'s count"):
        print(f"| {name} | {flops[name]:.2f} | {flops[name] / rate * 1000:.1f} |")
    bound = (flops["1x1"] + flops["other"] + flops["3x3 converted, Winograd multiplications"]) / rate * 1000
    lowest = (flops["1x1"] + flops["every stride-1 3x3 at F(6x6, 3x3)'s count"]) / rate * 1000
    print(f"the same with every stride-1 3x3 layer (converted or not) at F(6x6, 3x3)'s multiplication count: "
          f"{lowest:.1f} ms = {lowest / peer_ms:.2f}x")
    measured_1x1 = split["1x1 convolutions"]
    print(f"\nbound: every convolution at {rate:.0f} GFLOP/s, the converted 3x3 layers at Winograd's multiplication "
          f"count, nothing else costing: {bound:.1f} ms = {bound / peer_ms:.2f}x torchvision's time")
    print(f"1x1 convolutions measured: {measured_1x1:.1f} ms ({flops['1x1'] / measured_1x1 * 1000:.0f} GFLOP/s) = "
          f"{measured_1x1 / peer_ms:.2f}x torchvision's time; the target leaves "
          f"{TARGET * peer_ms - measured_1x1:.1f} ms for everything else, which now takes {ours_ms - measured_1x1:.1f}")


if __name__ == "__main__":
    main()
