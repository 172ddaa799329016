"""An inference path with the head's class and box convolutions stacked into one per map
(``sagedet.model.fused_head``, as the exported graphs have it since the eighth session) against the same
path with torchvision's two convolutions per map, and torchvision's eager SSD, taking turns call by call
in one process (one image, random weights, then the server's NMS). Prints each median, both ratios to
torchvision and the largest output difference.

    python bench/checks/fused_head.py [--network vgg-16] [--path winograd|torchscript|onnxruntime]
        [--iterations 20] [--image-shape 300] [--glibc-malloc-defaults] [--layers]

``--layers`` times the head alone instead, map by map on the model's own feature maps (channels-last, as
the paths run them): the class and box convolutions against the stacked one, each converted to Winograd's
algorithm where the winograd path's rule takes it (``sagedet.model.winograd.eligible`` and ``tile_for``).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
from pathlib import Path
from unittest import mock

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from inference_latency import NMS_THRESHOLD, randomize, taking_turns  # noqa: E402
from machine import add_malloc_option, set_malloc  # noqa: E402
from train_throughput import torchvision_peer  # noqa: E402

from sagedet.export import graph  # noqa: E402
from sagedet.model.fused_head import fuse_head  # noqa: E402
from sagedet.model.ssd import build_ssd, select_detections  # noqa: E402
from sagedet.model.winograd import use_winograd  # noqa: E402
from sagedet.serve import engines  # noqa: E402


def build(path: str, model, stacked: bool):
    """The path as a worker builds it, with the head stacked or (``fuse_head`` made a no-op) not."""
    cpu = torch.device("cpu")
    builders = {"winograd": lambda: engines.winograd_path(model, cpu),
                "torchscript": lambda: engines.torchscript_path(model, cpu),
                "onnxruntime": lambda: engines.onnxruntime_path(model, Path("/nonexistent"), None)}
    if stacked:
        return builders[path]()
    keep = lambda head: head  # noqa: E731
    with mock.patch.object(engines, "fuse_head", keep), mock.patch.object(graph, "fuse_head", keep):
        return builders[path]()


def head_layers(model, image_shape: int, iterations: int) -> None:
    """Per map: ms of the two convolutions and of the stacked one, taking turns, and the change."""
    separate = copy.deepcopy(model.head).to(memory_format=torch.channels_last)
    stacked = fuse_head(copy.deepcopy(model.head)).to(memory_format=torch.channels_last)
    use_winograd(separate)
    use_winograd(stacked)
    image = torch.rand(1, 3, image_shape, image_shape, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        maps = [m.contiguous(memory_format=torch.channels_last)
                for m in model.features((image - model.image_mean) / model.image_std)]
        print("| map | channels in | class + box out | two convolutions, ms | stacked, ms | change |")
        print("|---|---|---|---|---|---|")
        totals = [0.0, 0.0]
        pairs = zip(separate.classification_head.module_list, separate.regression_head.module_list, stacked.convs, maps)
        for classes, boxes, conv, features in pairs:
            calls = {"two": lambda: (classes(features), boxes(features)), "stacked": lambda: conv(features)}
            times = taking_turns(calls, iterations, warmup=3)
            two, one = statistics.median(times["two"]), statistics.median(times["stacked"])
            totals[0] += two
            totals[1] += one
            print(f"| {features.shape[2]}x{features.shape[3]} | {classes.in_channels} | {classes.out_channels} + "
                  f"{boxes.out_channels} | {two:.2f} | {one:.2f} | {one / two - 1:+.0%} |")
        print(f"| all | | | {totals[0]:.2f} | {totals[1]:.2f} | {totals[1] / totals[0] - 1:+.0%} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--network", default="vgg-16")
    parser.add_argument("--path", default="winograd", choices=["winograd", "torchscript", "onnxruntime"])
    parser.add_argument("--image-shape", type=int, default=300)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--layers", action="store_true", help="time the head alone, map by map")
    add_malloc_option(parser)
    args = parser.parse_args()
    malloc = set_malloc(args)
    torch.manual_seed(0)
    model = randomize(build_ssd(args.network, 20, args.image_shape)).eval()
    if args.layers:
        print(f"{args.network} at {args.image_shape}, the head alone, {torch.get_num_threads()} threads; {malloc}")
        head_layers(model, args.image_shape, args.iterations)
        return
    peer, peer_name = torchvision_peer(args.network, model)
    peer = randomize(peer).eval()
    separate, stacked = build(args.path, copy.deepcopy(model), False), build(args.path, copy.deepcopy(model), True)
    image = torch.rand(1, 3, args.image_shape, args.image_shape, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        difference = max((a - b).abs().max().item() for a, b in zip(separate(image), stacked(image)))
        times = taking_turns({"torchvision": lambda: peer([image[0]]),
                              "two convolutions a map": lambda: select_detections(*separate(image), NMS_THRESHOLD),
                              "stacked": lambda: select_detections(*stacked(image), NMS_THRESHOLD)},
                             args.iterations, warmup=3, pause=args.path == "onnxruntime")
    medians = {name: statistics.median(ms) for name, ms in times.items()}
    print(f"{args.network} at {args.image_shape}, {args.path} path, {torch.get_num_threads()} threads; {malloc}; "
          f"torchvision: {peer_name}")
    for name, ms in medians.items():
        print(f"{name}: {ms:.1f} ms ({ms / medians['torchvision']:.3f}x torchvision)")
    change = medians["stacked"] / medians["two convolutions a map"] - 1
    print(f"stacked against two convolutions a map: {change:+.1%}; largest output difference {difference:.1e}")


if __name__ == "__main__":
    main()
