"""Per-layer time of every 3x3 stride-1 padding-1 convolution of a network: oneDNN (channels-last input, as
the server and CPU training run) against sagedet's Winograd convolution with 4x4 and with 6x6 output tiles,
forward alone (inference) or forward + backward (training), on the input shapes the layer sees in the SSD
model. The evidence behind ``sagedet.model.winograd.eligible``'s rule and ``tile_for``'s choice of tile;
the ``rule`` column says what they chose, the ratio is that choice's time over oneDNN's.

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
from sagedet.model.winograd import computable, convert, eligible, tile_for  # noqa: E402


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
    print("| layer | C_in | C_out | map | dilation | oneDNN ms | F(4x4) ms | F(6x6) ms | ratio | rule |")
    print("|---|---|---|---|---|---|---|---|---|---|")
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
        else:
            def run(module, x=x):
                with torch.no_grad():
                    return module(x)
        direct = timed(lambda: run(conv), args.iterations, 1)[0]
        winograd = {}
        for tile in (4, 6):
            winograd_module.tile_for = lambda *shape, backward=False, tile=tile: tile  # what the forward calls
            try:
                winograd[tile] = timed(lambda: run(fast), args.iterations, 1)[0]
                if not args.backward:
                    with torch.no_grad():
                        expected = conv(x)
                        assert torch.allclose(expected, fast(x), rtol=1e-3, atol=1e-3 * expected.abs().max().item())
            finally:
                winograd_module.tile_for = tile_for
        tile = tile_for(shape[2], shape[3], conv.in_channels, conv.out_channels, backward=args.backward)
        if not eligible(conv, training=args.backward) or tile is None:
            rule, chosen = "oneDNN", direct
        else:
            rule, chosen = f"F({tile}x{tile})", winograd[tile]
        total_direct += direct
        total_chosen += chosen
        print(f"| {name} | {conv.in_channels} | {conv.out_channels} | {shape[2]}x{shape[3]} | {conv.dilation[0]} "
              f"| {direct:.1f} | {winograd[4]:.1f} | {winograd[6]:.1f} | {chosen / direct:.2f} | {rule} |")
    if not shapes:
        print(f"\n{args.network} has no 3x3 stride-1 padding-1 convolution to compute by Winograd's algorithm")
        return
    print(f"\nall these layers: oneDNN {total_direct:.0f} ms, with the rule's choice {total_chosen:.0f} ms "
          f"({total_chosen / total_direct:.2f})")

if __name__ == "__main__":
    main()
