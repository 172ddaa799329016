"""Winograd's output transform alone, in its two forms, on the products each converted layer of a
network makes for one image: one GEMM with the Kronecker product A^T ⊗ A^T (tile² x α²) over the
flattened tiles, against two passes of A^T (over the tiles' rows, then their columns), for both tile
sizes, the forms taking turns call by call. The evidence for ``sagedet.model.winograd._matrices``'
choice (two passes for 6x6 tiles, one GEMM for 4x4).

    python bench/checks/output_transform.py [--network vgg-16] [--image-shape 300] [--iterations 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from inference_latency import taking_turns  # noqa: E402
from machine import add_malloc_option, set_malloc  # noqa: E402

from sagedet.model.ssd import build_ssd  # noqa: E402
from sagedet.model.winograd import computable, eligible, toom_cook  # noqa: E402


def forms(tile: int, columns: int) -> dict:
    alpha = tile + 2
    at = toom_cook(tile)[2].float()
    kron = torch.kron(at, at)
    repeated = at.expand(tile, tile, alpha).contiguous()
    m = torch.rand(alpha * alpha, columns)

    def two_passes():
        return torch.matmul(repeated, (at @ m.view(alpha, -1)).view(tile, alpha, -1))

    torch.testing.assert_close(two_passes().view(tile * tile, -1), kron @ m, rtol=1e-4, atol=1e-3)
    return {"one GEMM": lambda: kron @ m, "two passes": two_passes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--network", default="vgg-16")
    parser.add_argument("--image-shape", type=int, default=300)
    parser.add_argument("--iterations", type=int, default=30)
    add_malloc_option(parser)
    args = parser.parse_args()
    malloc = set_malloc(args)
    model = build_ssd(args.network, 20, args.image_shape).eval()
    shapes: set[tuple[int, int, int]] = set()
    hooks = [module.register_forward_hook(lambda m, inputs, out: shapes.add(
        (inputs[0].shape[2], inputs[0].shape[3], m.out_channels)))
        for module in model.modules() if computable(module) and eligible(module, training=True)]
    with torch.no_grad():
        model(torch.rand(1, 3, args.image_shape, args.image_shape))
    for hook in hooks:
        hook.remove()
    print(f"{args.network} at {args.image_shape}, {torch.get_num_threads()} threads; {malloc}\n")
    print("| map | C_out | tile | one GEMM, ms | two passes, ms | two passes / one GEMM |")
    print("|---|---|---|---|---|---|")
    for (height, width, c_out) in sorted(shapes, key=lambda s: -s[0] * s[1]):
        for tile in (4, 6):
            tiles = -(-height // tile) * -(-width // tile)
            times = taking_turns(forms(tile, tiles * c_out), args.iterations, warmup=3)
            gemm, passes = (statistics.median(times[name]) for name in ("one GEMM", "two passes"))
            print(f"| {height}x{width} | {c_out} | {tile} | {gemm:.2f} | {passes:.2f} | {passes / gemm:.2f} |")


if __name__ == "__main__":
    main()
