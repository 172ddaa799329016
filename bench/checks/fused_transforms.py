"""Would fused C++ transforms pay? Winograd's input transform (pad, tile, B^T d B) and output transform
(A^T m A, bias, crop) each as one pass in C++ (fused_transforms.cpp, built here with torch's
cpp_extension and -O3 -march=native; the matrices are written from ``toom_cook``), against the torch
operations of :mod:`sagedet.model.winograd` (several memory passes each). Scratch: sagedet does not
ship these kernels. Two measurements, each taking turns call by call:

1. per converted layer of the network (the forward rule's layers, one image): the whole layer with
   torch's transforms, with the fused ones, and oneDNN's convolution, plus each transform alone;
2. the whole detector, eager, with the layers converted (``use_winograd``), torch's transforms against
   the fused ones (the module's ``_winograd_conv3x3`` replaced), and torchvision's eager SSD.

Needs g++ and the Python headers (compiling takes about a minute).

    python bench/checks/fused_transforms.py [--network vgg-16] [--iterations 15] [--image-shape 300]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.cpp_extension import load

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from inference_latency import randomize, taking_turns  # noqa: E402
from machine import add_malloc_option, set_malloc  # noqa: E402
from train_throughput import torchvision_peer  # noqa: E402

from sagedet.model import winograd  # noqa: E402
from sagedet.model.ssd import build_ssd  # noqa: E402


def matrices_header() -> str:
    def rows(m: torch.Tensor) -> str:
        return "{" + ", ".join("{" + ", ".join(f"{v!r}f" for v in row) + "}" for row in m.tolist()) + "}"
    lines = ["#pragma once", "template <int A> struct Matrices;"]
    for tile in (4, 6):
        bt, _, at = winograd.toom_cook(tile)
        alpha = tile + 2
        lines.append(f"template <> struct Matrices<{alpha}> {{\n"
                     f"  static constexpr float bt[{alpha}][{alpha}] = {rows(bt)};\n"
                     f"  static constexpr float at[{tile}][{alpha}] = {rows(at)};\n}};")
    return "\n".join(lines) + "\n"


def build() -> None:
    directory = Path(tempfile.mkdtemp(prefix="fused-transforms-"))
    (directory / "matrices.h").write_text(matrices_header())
    load(name="sagedet_fused_bench", sources=[str(Path(__file__).with_suffix(".cpp"))], is_python_module=False,
         extra_cflags=["-O3", "-march=native"], extra_include_paths=[str(directory)], build_directory=str(directory))


def fused_conv3x3(x, u, bias, input_transform, output_transform):
    """``winograd._winograd_conv3x3`` with the fused transforms (inference only)."""
    ops = torch.ops.sagedet_fused_bench
    m = torch.bmm(ops.winograd_input(x, input_transform.shape[-1] - 2), u)
    return ops.winograd_output(m, bias, x.shape[0], x.shape[2], x.shape[3], False)


def per_layer(model: torch.nn.Module, image: torch.Tensor, iterations: int) -> None:
    inputs = {}
    def keep(module, args, out):
        inputs[module] = args[0]

    hooks = [conv.register_forward_hook(keep)
             for conv in model.modules() if isinstance(conv, winograd.WinogradConv2d)]
    model(image)
    for hook in hooks:
        hook.remove()
    print("layer (C_in -> C_out at HxW, tile): whole layer, torch transforms / fused / oneDNN; input transform "
          "torch / fused; the rest of the torch layer (products, output transform) / the fused output transform "
          "(ms, medians)")
    totals = [0.0, 0.0, 0.0]
    for conv, x in inputs.items():
        tile = winograd.tile_for(x.shape[2], x.shape[3], conv.in_channels, conv.out_channels)
        if tile is None:
            continue
        x = x.contiguous(memory_format=torch.channels_last)
        u = winograd.transform_weight(conv.weight, tile).contiguous()
        bt, _, at = winograd._matrices(tile, x.dtype, x.device)
        m = torch.bmm(winograd._transformed_input(x, bt), u)

        calls = {
            "layer torch": lambda: winograd._winograd_conv3x3(x, u, conv.bias, bt, at),
            "layer fused": lambda: fused_conv3x3(x, u, conv.bias, bt, at),
            "oneDNN": lambda: F.conv2d(x, conv.weight, conv.bias, padding=1),
            "in torch": lambda: winograd._transformed_input(x, bt),
            "in fused": lambda: torch.ops.sagedet_fused_bench.winograd_input(x, tile),
            "products": lambda: torch.bmm(winograd._transformed_input(x, bt), u),
            "out fused": lambda: torch.ops.sagedet_fused_bench.winograd_output(m, conv.bias, 1, x.shape[2],
                                                                               x.shape[3], False),
        }
        t = {name: statistics.median(ms) for name, ms in taking_turns(calls, iterations, warmup=2).items()}
        difference = (fused_conv3x3(x, u, conv.bias, bt, at) - F.conv2d(x, conv.weight, conv.bias, padding=1)).abs()
        for i, name in enumerate(("layer torch", "layer fused", "oneDNN")):
            totals[i] += t[name]
        print(f"{conv.in_channels} -> {conv.out_channels} at {x.shape[2]}x{x.shape[3]}, {tile}: "
              f"{t['layer torch']:.2f} / {t['layer fused']:.2f} / {t['oneDNN']:.2f}; "
              f"{t['in torch']:.2f} / {t['in fused']:.2f}; "
              f"{t['layer torch'] - t['in torch']:.2f} (products alone {t['products'] - t['in torch']:.2f}) / "
              f"{t['out fused']:.2f}; fused against oneDNN, largest difference {difference.max().item():.1e}")
    print(f"sum over these layers: {totals[0]:.1f} / {totals[1]:.1f} / {totals[2]:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--network", default="vgg-16")
    parser.add_argument("--image-shape", type=int, default=300)
    parser.add_argument("--iterations", type=int, default=15)
    add_malloc_option(parser)
    args = parser.parse_args()
    malloc = set_malloc(args)
    build()
    torch.manual_seed(0)
    model = randomize(build_ssd(args.network, 20, args.image_shape)).eval()
    peer, peer_name = torchvision_peer(args.network, model)
    peer = randomize(peer).eval()
    winograd.use_winograd(model)
    image = torch.rand(1, 3, args.image_shape, args.image_shape, generator=torch.Generator().manual_seed(1))
    print(f"{args.network} at {args.image_shape}, {torch.get_num_threads()} threads; {malloc}; "
          f"torchvision: {peer_name}")
    original = winograd._winograd_conv3x3
    with torch.inference_mode():
        per_layer(model, image, args.iterations)

        def with_fused():
            winograd._winograd_conv3x3 = fused_conv3x3
            try:
                return model(image)
            finally:
                winograd._winograd_conv3x3 = original
        reference = model(image)
        difference = max((a - b).abs().max().item() for a, b in zip(with_fused(), reference))
        times = taking_turns({"torchvision": lambda: peer([image[0]]), "torch transforms": lambda: model(image),
                              "fused transforms": with_fused}, args.iterations, warmup=3)
    medians = {name: statistics.median(ms) for name, ms in times.items()}
    print("whole detector, eager (its outputs before NMS; torchvision's with its post-processing):")
    for name, ms in medians.items():
        print(f"  {name}: {ms:.1f} ms ({ms / medians['torchvision']:.3f}x torchvision)")
    print(f"  largest output difference, fused against torch's transforms: {difference:.1e}")


if __name__ == "__main__":
    main()
