"""Winograd F(4x4, 3x3) convolution for the CPU: the deep 3x3 layers of vgg-16 and resnet-50 at
about half of oneDNN's time on a CPU without AVX-512, forward and backward.

Why by hand: oneDNN's Winograd kernels exist only for AVX-512 CPUs, and PyTorch's NNPACK (which has
them for AVX2) fails to run on the development machine ("NNPACK SpatialConvolution_updateOutput
failed" for every shape). On AVX2, oneDNN's direct 3x3 convolution already runs at about the CPU's
fp32 peak, so the remaining way to go faster without changing the answers beyond fp32 rounding is to
do less arithmetic. Winograd's minimal filtering (Lavin and Gray, "Fast Algorithms for Convolutional
Neural Networks", 2016) computes each 4x4 output tile from a 6x6 input tile with 36 multiplications
per input/output channel pair instead of 144: four times fewer, at the price of transforming the
input and output tiles (memory-bound passes) and an error a few times fp32's rounding (relative
differences ~1e-5 here).

All of it is expressed as torch tensor operations (unfold; the input transform as two passes of the
6-point transform, first over the tiles' rows, then over their columns; one batched matrix multiply
over the 36 tile positions; the output transform as one 16x36 matrix product), so autograd
differentiates it, TorchScript traces it
and the weights stay the convolution's own ``weight`` and ``bias``: :func:`use_winograd` changes
the class of eligible ``nn.Conv2d`` modules in place, keeping their parameters, state-dict keys,
names and identity (the base network's layer map used by ``freeze_layer_pattern`` still holds them).

Used by the server's ``winograd`` inference path and by training on the CPU (a whole training step,
batch 8, 1.37x (300 px) and 1.35x (512 px) faster than with torch's convolutions for vgg-16, 1.16x
and 1.14x for resnet-50, in A/B runs on the development machine; bench/checks/winograd_training.py).

Which layers pay (bench/checks/winograd_layers.py, one 2-core AVX2 CPU, one image, with glibc's
malloc set as :mod:`sagedet.allocator` sets it): the transforms cost memory traffic proportional to
C_in + C_out per tile, the multiply C_in x C_out, so what decides is their ratio, half the harmonic
mean of the two channel counts. :func:`eligible` takes a layer when that harmonic mean,
2·C_in·C_out / (C_in + C_out), reaches 128 (every layer with 128 or more channels in and out, and
the wide class heads). Measured, against oneDNN's time: vgg-16's 128 at 150x150 0.80-0.83x, 256 at
75x75 0.50-0.53x, 512 at 38x38 0.41-0.43x, 512 at 19x19 0.52-0.54x; resnet-50's 256 at 38x38
0.54-0.59x, 128 at 38x38 0.69-0.71x; class heads for 20 classes, 512→84 at 38x38 0.72-0.83x,
1024→126 at 19x19 0.49-0.52x, 1024→84 at 38x38 0.66x. Below 128 they lose or tie: 512→64 at 38x38
(harmonic mean 114) 1.24x, vgg-16's 64→128 at 150x150 (85) 0.96x, 64 at 300x300 (64) 2.6-2.8x, the box
heads (1024→24: 47) 1.8x. With glibc's default malloc the heads lose (1024→84: 1.47x), because
their transformed tiles are fresh pages on every call. Dilated layers are left to oneDNN: vgg-16's
fc6 (dilation 6 at 19x19) computed as an undilated Winograd convolution over the 36 interleaved
sub-grids took as long as oneDNN (1.01x).
"""

from __future__ import annotations

import functools
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MIN_CHANNELS = 128
"""A layer is converted when the harmonic mean of its input and output channels reaches this (the
module's docstring): 128 in and out, or e.g. 512 in and 84 out."""
CHUNK = 128 * 1024
"""The most tiles × channels (the larger of in and out) one call transforms and multiplies: a larger
batch goes in chunks of whole images, so that each chunk's transformed tiles (36 positions × CHUNK
floats, 18 MiB) stay in the CPU's caches. At batch 8, vgg-16 at 300 px on the 2-core AVX2 machine
(bench/checks/winograd_layers.py --batch 8, with and without chunks): conv2_2 (128 channels at
150x150, one image a chunk) 550 -> 257 ms (oneDNN 307), conv3_2 (256 at 75x75) 300 -> 146 ms,
conv4_2 (512 at 38x38, two images a chunk) 188 -> 133 ms; the 19x19 layers fit whole. Unchunked,
the whole batch's tiles did not fit and the layers ran at 0.95x oneDNN's time instead of 0.66x."""
MIN_MAP_CELLS = 16 * 16
"""Smaller maps go to oneDNN: few tiles, and the ones on the edge mostly padding (at 10x10, 1.24x
oneDNN's time; at 19x19, 0.52-0.75x)."""

# Lavin and Gray's F(4x4, 3x3) matrices: input B^T (6x6), filter G (6x3), output A^T (4x6).
_BT = [[4, 0, -5, 0, 1, 0],
       [0, -4, -4, 1, 1, 0],
       [0, 4, -4, -1, 1, 0],
       [0, -2, -1, 2, 1, 0],
       [0, 2, -1, -2, 1, 0],
       [0, 4, 0, -5, 0, 1]]
_G = [[1 / 4, 0, 0],
      [-1 / 6, -1 / 6, -1 / 6],
      [-1 / 6, 1 / 6, -1 / 6],
      [1 / 24, 1 / 12, 1 / 6],
      [1 / 24, -1 / 12, 1 / 6],
      [0, 0, 1]]
_AT = [[1, 1, 1, 1, 1, 0],
       [0, 1, -1, 2, -2, 0],
       [0, 1, 1, 4, 4, 0],
       [0, 1, -1, 8, -8, 1]]
TILE = 4  # output tile side
_INPUT_TILE = 6
_POSITIONS = _INPUT_TILE * _INPUT_TILE  # positions in an input tile: the batch of the tile products
_BIAS_POSITION = 1 * _INPUT_TILE + 1


@functools.lru_cache(maxsize=None)
def _matrices(dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """B^T repeated for the 6 tile rows (6x6x6), G (6x3), (A^T ⊗ A^T) (16x36). The input transform
    B^T d B is applied in two passes of B^T (rows, then columns: 432 multiply-adds per tile and
    channel) rather than as the Kronecker product B^T ⊗ B^T on the flattened tile (1,296): one 36x36
    GEMM over ~10^5 columns ran at about a fifth of the CPU's peak, and the two passes took a whole
    vgg-16 forward from 244 to 227 ms and its converted layers' forward + backward 14% faster
    (scratch A/B runs, 2026-11-22; docs/benchmarks.md has the committed commands' figures). The
    output transform stays one Kronecker GEMM: as two passes it was 10-30% slower. Made once per
    dtype and device, outside inference mode so that autograd may save them."""
    with torch.inference_mode(False), torch.no_grad():
        bt = torch.tensor(_BT, dtype=torch.float64)
        at = torch.tensor(_AT, dtype=torch.float64)
        g = torch.tensor(_G, dtype=torch.float64)
        return (bt.expand(6, 6, 6).to(dtype=dtype, device=device).contiguous(), g.to(dtype=dtype, device=device),
                torch.kron(at, at).to(dtype=dtype, device=device))


def transform_weight(weight: Tensor) -> Tensor:
    """(C_out, C_in, 3, 3) → U (36, C_in, C_out) = G g G^T per channel pair, differentiable."""
    c_out, c_in = weight.shape[:2]
    _, g, _ = _matrices(weight.dtype, weight.device)
    return torch.einsum("ai,oxij,bj->abxo", g, weight, g).reshape(_POSITIONS, c_in, c_out)


def _tiles(padded: Tensor) -> Tensor:
    """The overlapping 6x6 input tiles, 4 cells apart, of a padded map (N, C, 4·th + 2, 4·tw + 2),
    laid out for the transform: (36, N·th·tw·C)."""
    tiles = padded.unfold(2, 6, 4).unfold(3, 6, 4)  # N, C, th, tw, 6, 6 (literals: see _winograd_conv3x3)
    return tiles.permute(4, 5, 0, 2, 3, 1).reshape(36, -1)


class _Tiles(torch.autograd.Function):
    """:func:`_tiles` with a fast backward. Autograd's own gradient of ``unfold`` (a general
    scatter-add) took 11% of a vgg-16 training step; tiles overlap by 2 cells only, so the gradient
    is four strided additions: each tile's rows and columns 0-3 land in its own 4x4 block, rows and
    columns 4-5 in the first two of the next block's."""

    @staticmethod
    def forward(ctx, padded: Tensor) -> Tensor:
        ctx.shape = padded.shape
        return _tiles(padded)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        n, c, height, width = ctx.shape
        th, tw = (height - 2) // TILE, (width - 2) // TILE
        g = grad.view(_INPUT_TILE, _INPUT_TILE, n, th, tw, c).permute(2, 3, 0, 4, 1, 5)  # N, th, 6, tw, 6, C
        out = grad.new_empty(n, th + 1, TILE, tw + 1, TILE, c)  # channels-last, one block more each way
        out[:, :th, :, :tw, :] = g[:, :, :TILE, :, :TILE]
        out[:, th].zero_()
        out[:, :th, :, tw].zero_()
        out[:, 1:, :2, :tw, :] += g[:, :, TILE:, :, :TILE]
        out[:, :th, :, 1:, :2] += g[:, :, :TILE, :, TILE:]
        out[:, 1:, :2, 1:, :2] += g[:, :, TILE:, :, TILE:]
        out = out.view(n, TILE * (th + 1), TILE * (tw + 1), c)[:, :height, :width]
        return out.permute(0, 3, 1, 2)


def winograd_conv3x3(x: Tensor, u: Tensor, bias: Tensor | None = None) -> Tensor:
    """3x3 convolution, stride 1, padding 1 (output the size of the input) of x (N, C_in, H, W) with
    the transformed weight ``u`` from :func:`transform_weight`. The result is channels-last in
    memory, as every tile is produced with all its output channels together. A batch whose tiles
    would exceed :data:`CHUNK` is computed in chunks of whole images; while tracing, the chunking is
    recorded as a TorchScript loop, so that the graph splits any batch size it is given."""
    input_transform, _, output_transform = _matrices(x.dtype, x.device)
    tiles = -(-x.shape[2] // TILE) * -(-x.shape[3] // TILE)
    images = max(1, CHUNK // (tiles * max(x.shape[1], u.shape[2])))
    if torch.jit.is_tracing():
        return _scripted_in_chunks()(x, u, bias, input_transform, output_transform, images)
    if x.shape[0] <= images:
        return _winograd_conv3x3(x, u, bias, input_transform, output_transform)
    return _in_chunks(x, u, bias, input_transform, output_transform, images)


def _in_chunks(x: Tensor, u: Tensor, bias: Optional[Tensor], input_transform: Tensor, output_transform: Tensor,
               images: int) -> Tensor:
    return torch.cat([_winograd_conv3x3(chunk, u, bias, input_transform, output_transform)
                      for chunk in x.split(images)])


@functools.lru_cache(maxsize=None)
def _scripted_in_chunks():
    return torch.jit.script(_in_chunks)


@torch.jit.ignore
def _tiles_for_autograd(padded):  # unannotated: TorchScript takes Tensor -> Tensor (string annotations fail here)
    return _Tiles.apply(padded)


def _winograd_conv3x3(x: Tensor, u: Tensor, bias: Optional[Tensor], input_transform: Tensor,
                      output_transform: Tensor) -> Tensor:
    """One chunk. Written for TorchScript too, as is :func:`_tiles` (typing.Optional; TorchScript
    reads no int globals, so the tile sizes are the literals of TILE, _INPUT_TILE, _POSITIONS and
    _BIAS_POSITION)."""
    tile, positions, bias_position = 4, 36, 7
    n, c_in, h, w = x.shape[0], x.shape[1], x.shape[2], x.shape[3]
    c_out = u.shape[2]
    tiles_h, tiles_w = -(-h // tile), -(-w // tile)
    padded = F.pad(x, [1, tile * tiles_w + 1 - w, 1, tile * tiles_h + 1 - h])
    if torch.is_grad_enabled() and padded.requires_grad:
        tiles = _tiles_for_autograd(padded)
    else:
        tiles = _tiles(padded)
    rows = (input_transform[0] @ tiles.view(6, -1)).view(6, 6, -1)  # B^T over the tiles' rows
    v = torch.matmul(input_transform, rows).view(positions, n * tiles_h * tiles_w, c_in)  # then columns
    m = torch.bmm(v, u)  # 36, tiles, C_out
    if bias is not None:
        # Column 1 of A^T is all ones, so adding b at tile position (1, 1) adds b to all 16
        # outputs of the tile: the bias costs 1/16 of a pass over the output instead of a pass.
        m[bias_position].add_(bias)
    y = (output_transform @ m.view(positions, -1)).view(tile, tile, n, tiles_h, tiles_w, c_out)
    y = y.permute(2, 3, 0, 4, 1, 5).reshape(n, tile * tiles_h, tile * tiles_w, c_out)
    if tile * tiles_h != h or tile * tiles_w != w:
        y = y[:, :h, :w].contiguous()
    return y.permute(0, 3, 1, 2)


assert (TILE, _INPUT_TILE, _POSITIONS, _BIAS_POSITION) == (4, 6, 36, 7)  # the literals above


def _untraced_transform(weight: Tensor) -> Tensor:
    """The transformed weight, computed outside any running trace: a traced graph then holds it as a
    constant instead of recomputing it on every call (``torch.jit.freeze`` does not fold einsum)."""
    state = torch._C._get_tracing_state()
    torch._C._set_tracing_state(None)
    try:
        with torch.no_grad():
            return transform_weight(weight).contiguous()
    finally:
        torch._C._set_tracing_state(state)


class WinogradConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` (3x3, stride 1, padding 1, no dilation, one group, zero padding) computed with
    Winograd F(4x4, 3x3). Built by :func:`use_winograd` from an existing convolution; the
    transformed weight is cached for inference (no autograd) and recomputed when the weight changes
    (its version counter) or while gradients are recorded."""

    _cached: tuple[tuple[int, int, torch.dtype, bool], Tensor] | None

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[2] * x.shape[3] < MIN_MAP_CELLS:
            return super().forward(x)
        weight = self.weight.to(x.dtype)
        if torch.is_grad_enabled() and weight.requires_grad:
            u = transform_weight(weight)
        else:
            # A weight made in inference mode is an inference tensor: it has no version counter
            # (and training does not update it in place), and what is computed from it must not
            # reach autograd later, so the mode is part of the key.
            version = -1 if self.weight.is_inference() else self.weight._version
            key = (version, self.weight.data_ptr(), x.dtype, torch.is_inference_mode_enabled())
            if self._cached is None or self._cached[0] != key:
                self._cached = (key, _untraced_transform(weight))
            u = self._cached[1]
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return winograd_conv3x3(x, u, bias)


def computable(conv: nn.Module) -> bool:
    """Whether ``conv`` is a plain ``nn.Conv2d`` that :class:`WinogradConv2d` computes: 3x3, stride
    1, padding 1, no dilation, one group, zero padding."""
    return (type(conv) is nn.Conv2d and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
            and conv.groups == 1 and conv.dilation == (1, 1) and conv.padding == (1, 1)
            and conv.padding_mode == "zeros")


def eligible(conv: nn.Module) -> bool:
    """Whether ``conv`` is a convolution Winograd F(4x4, 3x3) computes exactly and faster: the
    harmonic mean of its channel counts reaches :data:`MIN_CHANNELS`."""
    if not computable(conv):
        return False
    c_in, c_out = conv.in_channels, conv.out_channels
    return 2 * c_in * c_out >= MIN_CHANNELS * (c_in + c_out)


def convert(conv: nn.Conv2d) -> WinogradConv2d:
    """``conv`` itself, made a :class:`WinogradConv2d` (same parameters, same object)."""
    conv.__class__ = WinogradConv2d
    conv._cached = None
    return conv


def use_winograd(model: nn.Module) -> list[str]:
    """Convert every eligible convolution of ``model`` in place; returns their names. For the CPU:
    CUDA has cuDNN's own algorithms."""
    names = []
    for name, module in model.named_modules():
        if eligible(module):
            convert(module)
            names.append(name)
    return names
