"""Per-layer time of every 3x3 stride-1 padding-1 convolution of a network: oneDNN (channels-last input, as
the server and CPU training run) against sagedet's Winograd F(4x4, 3x3), forward alone (inference)
or forward + backward (training), on the input shapes the layer sees in the SSD model. The evidence
behind ``sagedet.model.winograd.eligible``'s rule; the ``rule`` column says what it chose.

    python bench/checks/winograd_layers.py [--network vgg-16] [--image-shape 300] [--batch 1]
        [--backward] [--iterations 5] [--threads N] [--chunk TILE_CHANNELS] [--num-classes 20]
        [--glibc-malloc-defaults]

``--chunk`` overrides ``sagedet.model.winograd.CHUNK`` (a huge value: every batch in one piece).
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from inference_latency import timed  # noqa: E402
from machine import add_malloc_option, set_malloc  # noqa: E402

from sagedet.model import winograd as winograd_module  # noqa: E402
from sagedet.model.ssd import build_ssd  # noqa: E402
from sagedet.model.winograd import computable, convert, eligible  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--network", default="vgg-16")
    parser.add_argument("--image-shape", type=int, default=300)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--backward", action="store_true", help="time forward + backward (training)")
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--chunk", type=int, default=winograd_module.CHUNK, help="tiles x channels per Winograd call")
    parser.add_argument("--num-classes", type=int, default=20, help="sets the classification heads' widths")
    add_malloc_option(parser)
    args = parser.parse_args()
    malloc = set_malloc(args)
    winograd_module.CHUNK = args.chunk
    torch.set_num_threads(args.threads)
    model = build_ssd(args.network, args.num_classes, args.image_shape).eval()
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = []

    def record(name: str):
        def hook(module, inputs, output) -> None:
            shapes.setdefault(name, tuple(inputs[0].shape))
        return hook

    for name, module in model.named_modules():
        if computable(module):
            hooks.append(module.register_forward_hook(record(name)))
    with torch.no_grad():
        model(torch.rand(1, 3, args.image_shape, args.image_shape))
    for hook in hooks:
        hook.remove()
    modules = dict(model.named_modules())
    print(f"{args.network} at {args.image_shape}, batch {args.batch}, "
          f"{'forward + backward' if args.backward else 'forward'}, {args.threads} threads, chunk {args.chunk}, "
          f"{args.num_classes} classes; {malloc}")
    print("| layer | C_in | C_out | map | dilation | oneDNN ms | Winograd ms | ratio | rule |")
    print("|---|---|---|---|---|---|---|---|---|")
    total_direct = total_chosen = 0.0
    for name, shape in shapes.items():
        conv = modules[name]
        fast = convert(copy.deepcopy(conv))
        x = torch.randn(args.batch, *shape[1:]).contiguous(memory_format=torch.channels_last)
        if args.backward:
            x.requires_grad_(True)
            grad = torch.randn(args.batch, conv.out_channels, *shape[2:])

            def run(module, x=x, grad=grad):
                module(x).backward(grad)
                module.zero_grad(set_to_none=True)
                x.grad = None
            direct = timed(lambda: run(conv), args.iterations, 1)[0]
            winograd = timed(lambda: run(fast), args.iterations, 1)[0]
        else:
            with torch.no_grad():
                direct = timed(lambda: conv(x), args.iterations, 1)[0]
                winograd = timed(lambda: fast(x), args.iterations, 1)[0]
                assert torch.allclose(conv(x), fast(x), rtol=1e-3, atol=1e-3 * conv(x).abs().max().item())
        chosen = eligible(conv)
        total_direct += direct
        total_chosen += winograd if chosen else direct
        print(f"| {name} | {conv.in_channels} | {conv.out_channels} | {shape[2]}x{shape[3]} | {conv.dilation[0]} "
              f"| {direct:.1f} | {winograd:.1f} | {winograd / direct:.2f} | {'Winograd' if chosen else 'oneDNN'} |")
    print(f"\nall these layers: oneDNN {total_direct:.0f} ms, with the rule's choice {total_chosen:.0f} ms "
          f"({total_chosen / total_direct:.2f})")


if __name__ == "__main__":
    main()
