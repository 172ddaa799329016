"""Winograd F(4x4, 3x3) and F(6x6, 3x3) convolutions for the CPU: the deep 3x3 layers of vgg-16 and
resnet-50 at about half of oneDNN's time on a CPU without AVX-512, forward and backward.

Why by hand: oneDNN's Winograd kernels exist only for AVX-512 CPUs, and PyTorch's NNPACK (which has
them for AVX2) fails to run on the development machine ("NNPACK SpatialConvolution_updateOutput
failed" for every shape). On AVX2, oneDNN's direct 3x3 convolution already runs at about the CPU's
fp32 peak, so the remaining way to go faster without changing the answers beyond fp32 rounding is to
do less arithmetic. Winograd's minimal filtering (Lavin and Gray, "Fast Algorithms for Convolutional
Neural Networks", 2016) computes each 4x4 output tile from a 6x6 input tile with 36 multiplications
per input/output channel pair instead of 144: four times fewer, at the price of transforming the
input and output tiles (memory-bound passes) and an error a few times fp32's rounding (relative
differences ~1e-5 here). On large maps (:func:`tile_for`) 6x6 output tiles from 8x8 input tiles
need 64 multiplications per 36 outputs instead of 324, at about twice F(4x4, 3x3)'s error.

All of it is expressed as torch tensor operations (unfold; the input transform as two passes of the
1-D transform, first over the tiles' rows, then over their columns; one batched matrix multiply
over the tile positions; the output transform as one matrix product, or for 6x6 tiles as two
passes like the input's), so autograd differentiates
it, TorchScript traces it and the weights stay the convolution's own ``weight`` and ``bias``:
:func:`use_winograd` changes the class of eligible ``nn.Conv2d`` modules in place, keeping their
parameters, state-dict keys, names and identity (the base network's layer map used by
``freeze_layer_pattern`` still holds them).

Used by the server's ``winograd`` inference path and by training on the CPU, which also converts the
narrower layers that pay only with a backward pass (:data:`MIN_TRAINING_CHANNELS`) and then times each
converted layer against torch's convolution on this machine, giving the slower back
(:mod:`sagedet.model.winograd_tuning`: on an AVX-512 CPU oneDNN wins some large maps): a whole training
step, batch 8, 300 px, ran 1.71x faster than with torch's convolutions for vgg-16 (1.55x with the
server's layers only) and 1.18x for resnet-50, the steps alternating in one process on the
development machine (bench/checks/winograd_training.py, 2026-11-22).

Which layers pay (bench/checks/winograd_layers.py, one 2-core AVX2 CPU, one image, with glibc's
malloc set as :mod:`sagedet.allocator` sets it): the transforms cost memory traffic proportional to
C_in + C_out per tile, the multiply C_in x C_out, so what decides is their ratio, half the harmonic
mean of the two channel counts. :func:`tile_for` takes a layer when that harmonic mean, 2·C_in·C_out
/ (C_in + C_out), reaches 128 on maps taking 4x4 tiles (every layer with 128 or more channels in and
out, and the wide class heads) and 80 on maps taking 6x6 tiles (:data:`MIN_LARGE_MAP_CHANNELS`;
:func:`eligible` converts layers from 80 on). Measured with 4x4 tiles before the separable input
transform (newer figures, both tile sizes, in docs/benchmarks.md), against oneDNN's time: vgg-16's
128 at 150x150 0.80-0.83x, 256 at 75x75 0.50-0.53x, 512 at 38x38 0.41-0.43x, 512 at 19x19
0.52-0.54x; resnet-50's 256 at 38x38 0.54-0.59x, 128 at 38x38 0.69-0.71x; class heads for 20
classes, 512→84 at 38x38 0.72-0.83x, 1024→126 at 19x19 0.49-0.52x, 1024→84 at 38x38 0.66x. Below 128
they lose or tie: 512→64 at 38x38 (harmonic mean 114) 1.24x, vgg-16's 64→128 at 150x150 (85) 0.96x,
64 at 300x300 (64) 2.6-2.8x, the box heads (1024→24: 47) 1.8x (4x4 tiles, before the separable
transforms; with 6x6 tiles and both transforms in two passes, conv2_1 took 0.63x). With glibc's
default malloc the heads lose (1024→84: 1.47x), because their transformed tiles are fresh pages on
every call. Dilated layers are left to oneDNN: vgg-16's fc6 (dilation 6 at 19x19) computed as an
undilated Winograd convolution over the 36 interleaved sub-grids took as long as oneDNN (1.01x).
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MIN_CHANNELS = 128
"""In a forward pass alone, a layer is computed by Winograd's algorithm with 4x4 tiles when the
harmonic mean of its input and output channels reaches this (the module's docstring): 128 in and
out, or e.g. 512 in and 84 out."""
MIN_LARGE_MAP_CHANNELS = 80
"""In a forward pass alone, on maps of :data:`LARGE_MAP_CELLS` or more (6x6 tiles), from this
harmonic mean on: the larger tile saves more multiplications per transformed value, and since the
output transform runs in two passes vgg-16's conv2_1 (64→128 at 150x150, harmonic mean 85) took
12.1 ms against oneDNN's 19.3 (bench/checks/winograd_layers.py; docs/benchmarks.md, sixth session).
resnet-50's 64-channel layers at 75x75 (harmonic mean 64) about tied (0.89-0.96x in that run, 1.16x
in a scratch one) and stay with oneDNN; with 4x4 tiles the minimum stays :data:`MIN_CHANNELS` (128
to 64 channels at 38x38, harmonic mean 85, took 1.08x oneDNN's time in a scratch run)."""
MIN_TRAINING_CHANNELS = 64
"""For training, layers from this harmonic mean on are converted too, and computed by Winograd's
algorithm where gradients are recorded: with the backward pass oneDNN's time is about three times
its forward time and these layers pay as well (vgg-16 at 300 px, batch 8, forward + backward with
6x6 tiles against oneDNN: conv1_2, 64 channels at 300x300, 1.63 s against 2.35; conv2_1, 64→128 at
150x150, 0.36 against 0.92; bench/checks/winograd_layers.py --backward). In a forward pass alone
(validation, inference) they run torch's convolution: there they lose (conv1_2 2.1x oneDNN's time)."""
CHUNK = 128 * 1024
"""The most tiles × channels (the larger of in and out) one call transforms and multiplies with 4x4
tiles (with 6x6 tiles, 36/64 of that): a larger batch goes in chunks of whole images, so that each
chunk's transformed tiles (36 positions × CHUNK floats, 18 MiB) stay in the CPU's caches. At batch
8, vgg-16 at 300 px on the 2-core AVX2 machine, with 4x4 tiles (bench/checks/winograd_layers.py
--batch 8, with and without chunks): conv2_2 (128 channels at 150x150, one image a chunk) 550 ->
257 ms (oneDNN 307), conv3_2 (256 at 75x75) 300 -> 146 ms, conv4_2 (512 at 38x38, two images a
chunk) 188 -> 133 ms; the 19x19 layers fit whole. Unchunked, the whole batch's tiles did not fit
and the layers ran at 0.95x oneDNN's time instead of 0.66x."""
MIN_MAP_CELLS = 16 * 16
"""Smaller maps go to oneDNN: few tiles, and the ones on the edge mostly padding (at 10x10, 1.24x
oneDNN's time; at 19x19, 0.52-0.75x)."""
LARGE_MAP_CELLS = 64 * 64
"""Maps of this many cells or more are computed with 6x6 output tiles, F(6x6, 3x3); smaller ones
with F(4x4, 3x3). The larger tile needs 64 products per 36 output cells instead of 36 per 16 (21%
fewer multiplications), but its transformed weight is 64/36 as large and its edge tiles waste more
padding: it pays on the large maps, where the products dominate and the tiles are many, and loses
on small ones, where the multiply is bound by reading the transformed weight (measured in
docs/benchmarks.md, bench/checks/winograd_layers.py)."""
MAX_IMAGE_FLOATS = 8 * 1024 * 1024
"""The most floats one image's transformed tiles may take (32 MiB, the mmap threshold that
:mod:`sagedet.allocator` sets): a larger buffer is mapped afresh and faulted in on every call, and
the layer ran slower than oneDNN: vgg-16 at 512 px, conv2_2 (128 channels at 256x256) 237 ms with
4x4 tiles, 214 with 6x6, against oneDNN's 124 (bench/checks/winograd_layers.py). Such layers are
left to torch's convolution in a forward pass alone (:func:`tile_for`); a batch of smaller images is
split into chunks instead (:data:`CHUNK`)."""
_POINTS = {4: (0, 1, -1, 2, -2), 6: (0, 1, -1, 2, -2, Fraction(1, 2), Fraction(-1, 2))}
"""The interpolation points of each tile size (and the point at infinity): Lavin and Gray's for
F(4x4, 3x3); for F(6x6, 3x3) the usual choice, whose fp32 error stayed at ~1.5e-5 relative, about
twice F(4x4, 3x3)'s."""


def _polynomial(roots: list[Fraction]) -> list[Fraction]:
    """Coefficients, lowest power first, of the product of (x - root) over ``roots``."""
    coefficients = [Fraction(1)]
    for root in roots:
        coefficients = [high - root * low for high, low in zip([Fraction(0)] + coefficients, coefficients + [0])]
    return coefficients


@functools.lru_cache(maxsize=None)
def toom_cook(tile: int) -> tuple[Tensor, Tensor, Tensor]:
    """B^T (α x α), G (α x 3) and A^T (tile x α), α = tile + 2, of Winograd's F(tile x tile, 3x3),
    built in exact fractions from :data:`_POINTS` by the Toom-Cook construction (Lavin and Gray,
    section 4; for tile 4 these are the matrices printed there): row k of B^T holds the coefficients
    of the product of (x - p) over the other points, row k of G the powers of p_k divided by that
    product's value at p_k, column k of A^T the powers of p_k; the last row or column is the point
    at infinity. Returned as float64."""
    points = [Fraction(p) for p in _POINTS[tile]]
    bt, g = [], []
    for k, point in enumerate(points):
        others = points[:k] + points[k + 1:]
        bt.append(_polynomial(others) + [Fraction(0)])
        value = functools.reduce(lambda product, other: product * (point - other), others, Fraction(1))
        g.append([point ** j / value for j in range(3)])
    bt.append(_polynomial(points))
    g.append([Fraction(0), Fraction(0), Fraction(1)])
    at = [[point ** i for point in points] + [Fraction(int(i == tile - 1))] for i in range(tile)]
    return tuple(torch.tensor([[float(x) for x in row] for row in m], dtype=torch.float64) for m in (bt, g, at))


def _wide_enough(in_channels: int, out_channels: int, minimum: int) -> bool:
    """Whether the harmonic mean of the channel counts, 2·C_in·C_out / (C_in + C_out), reaches ``minimum``."""
    return 2 * in_channels * out_channels >= minimum * (in_channels + out_channels)


def tile_for(height: int, width: int, in_channels: int, out_channels: int, backward: bool = False) -> int | None:
    """The output tile side a converted layer uses on a map of this size: 6 on maps of
    :data:`LARGE_MAP_CELLS` or more, else 4; None where torch's convolution is used instead: maps
    under :data:`MIN_MAP_CELLS`, and, in a forward pass alone (``backward`` false), layers narrower
    than :data:`MIN_CHANNELS` (:data:`MIN_LARGE_MAP_CHANNELS` on maps taking 6x6 tiles) and maps
    whose one image's transformed tiles would exceed :data:`MAX_IMAGE_FLOATS`. With a backward pass
    to follow, Winograd's algorithm still wins on those maps: oneDNN's gradient convolutions are
    slower than its forward one (vgg-16 at 512 px, batch 8, forward + backward, conv2_2: 4.5 s with
    6x6 tiles against oneDNN's 10.0 s)."""
    cells = height * width
    if cells < MIN_MAP_CELLS:
        return None
    tile = 6 if cells >= LARGE_MAP_CELLS else 4
    minimum = MIN_TRAINING_CHANNELS if backward else MIN_LARGE_MAP_CHANNELS if tile == 6 else MIN_CHANNELS
    if not _wide_enough(in_channels, out_channels, minimum):
        return None
    floats = (tile + 2) ** 2 * -(-height // tile) * -(-width // tile) * max(in_channels, out_channels)
    if not backward and floats > MAX_IMAGE_FLOATS:
        return None
    return tile


@functools.lru_cache(maxsize=None)
def _matrices(tile: int, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """The input transform: B^T repeated for the α tile rows (α x α x α); G (α x 3); the output
    transform: for 4x4 tiles the Kronecker product A^T ⊗ A^T (tile² x α²), for 6x6 tiles A^T
    repeated for the tile rows (tile x tile x α).

    The input transform B^T d B is applied in two passes of B^T (rows, then columns: 2α³
    multiply-adds per tile and channel) rather than as B^T ⊗ B^T on the flattened tile (α⁴): for
    tile 4, one 36x36 GEMM over ~10^5 columns ran at about a fifth of the CPU's matrix-multiply
    rate, and the two passes were faster forward and forward + backward. The output transform of
    4x4 tiles stays one Kronecker GEMM (as two passes, 0.97-1.37x its time on vgg-16's 75x75 to
    19x19 maps); for 6x6 tiles, whose 36x64 GEMM ran at about a third of the machine's
    matrix-multiply rate, two passes took 0.64-0.78x its time on the 38x38 to 300x300 maps
    (bench/checks/output_transform.py; docs/benchmarks.md, sixth session). Made once per tile, dtype
    and device, outside inference mode so that autograd may save them."""
    with torch.inference_mode(False), torch.no_grad():
        bt, g, at = toom_cook(tile)
        alpha = tile + 2
        output_transform = at.expand(tile, tile, alpha) if tile == 6 else torch.kron(at, at)
        return (bt.expand(alpha, alpha, alpha).to(dtype=dtype, device=device).contiguous(),
                g.to(dtype=dtype, device=device), output_transform.to(dtype=dtype, device=device).contiguous())


def transform_weight(weight: Tensor, tile: int = 4) -> Tensor:
    """(C_out, C_in, 3, 3) → U (α², C_in, C_out) = G g G^T per channel pair, differentiable."""
    c_out, c_in = weight.shape[:2]
    _, g, _ = _matrices(tile, weight.dtype, weight.device)
    return torch.einsum("ai,oxij,bj->abxo", g, weight, g).reshape((tile + 2) ** 2, c_in, c_out)


def _tiles(padded: Tensor, tile: int) -> Tensor:
    """The overlapping α x α input tiles (α = tile + 2), ``tile`` cells apart, of a padded map
    (N, C, tile·th + 2, tile·tw + 2), laid out for the transform: (α², N·th·tw·C)."""
    alpha = tile + 2
    tiles = padded.unfold(2, alpha, tile).unfold(3, alpha, tile)  # N, C, th, tw, α, α
    return tiles.permute(4, 5, 0, 2, 3, 1).reshape(alpha * alpha, -1)


class _Tiles(torch.autograd.Function):
    """:func:`_tiles` with a fast backward. Autograd's own gradient of ``unfold`` (a general
    scatter-add) took 11% of a vgg-16 training step; tiles overlap by 2 cells only, so the gradient
    is four strided additions: each tile's rows and columns 0 to tile-1 land in its own block, the
    last two rows and columns in the first two of the next block's. The tile side is read from
    ``input_transform`` (α x α x α), so that TorchScript sees tensors only."""

    @staticmethod
    def forward(ctx, padded: Tensor, input_transform: Tensor) -> Tensor:
        ctx.shape = padded.shape
        ctx.tile = input_transform.shape[-1] - 2
        return _tiles(padded, ctx.tile)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        n, c, height, width = ctx.shape
        tile = ctx.tile
        alpha = tile + 2
        th, tw = (height - 2) // tile, (width - 2) // tile
        g = grad.view(alpha, alpha, n, th, tw, c).permute(2, 3, 0, 4, 1, 5)  # N, th, α, tw, α, C
        out = grad.new_empty(n, th + 1, tile, tw + 1, tile, c)  # channels-last, one block more each way
        out[:, :th, :, :tw, :] = g[:, :, :tile, :, :tile]
        out[:, th].zero_()
        out[:, :th, :, tw].zero_()
        out[:, 1:, :2, :tw, :] += g[:, :, tile:, :, :tile]
        out[:, :th, :, 1:, :2] += g[:, :, :tile, :, tile:]
        out[:, 1:, :2, 1:, :2] += g[:, :, tile:, :, tile:]
        out = out.view(n, tile * (th + 1), tile * (tw + 1), c)[:, :height, :width]
        return out.permute(0, 3, 1, 2), None


def winograd_conv3x3(x: Tensor, u: Tensor, bias: Tensor | None = None) -> Tensor:
    """3x3 convolution, stride 1, padding 1 (output the size of the input) of x (N, C_in, H, W) with
    the transformed weight ``u`` from :func:`transform_weight`, whose first dimension (36 or 64)
    says the tile size. The result is channels-last in memory, as every tile is produced with all
    its output channels together. A batch whose transformed tiles would exceed 36 x :data:`CHUNK`
    floats is computed in chunks of whole images; while tracing, the chunking is recorded as a
    TorchScript loop, so that the graph splits any batch size it is given."""
    positions = u.shape[0]
    tile = math.isqrt(positions) - 2
    input_transform, _, output_transform = _matrices(tile, x.dtype, x.device)
    tiles = -(-x.shape[2] // tile) * -(-x.shape[3] // tile)
    images = max(1, 36 * CHUNK // (positions * tiles * max(x.shape[1], u.shape[2])))
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


def _padded(x: Tensor, tile: int) -> Tensor:
    """x padded by one cell before and enough after for whole tiles: (N, C, tile·th + 2, tile·tw + 2)."""
    h, w = x.shape[2], x.shape[3]
    return F.pad(x, [1, tile * -(-w // tile) + 1 - w, 1, tile * -(-h // tile) + 1 - h])


def _transformed(tiles: Tensor, input_transform: Tensor, c_in: int) -> Tensor:
    """B^T d B of every tile, from :func:`_tiles`' layout: (α², tiles, C_in)."""
    alpha = input_transform.shape[-1]
    rows = (input_transform[0] @ tiles.reshape(alpha, -1)).view(alpha, alpha, -1)  # B^T over the tiles' rows
    return torch.matmul(input_transform, rows).view(alpha * alpha, -1, c_in)  # then over their columns


def _transformed_input(x: Tensor, input_transform: Tensor) -> Tensor:
    """V = B^T d B of every tile of x, with no autograd-specific tiling (:class:`_Tiles`): (α², tiles, C_in)."""
    tile = input_transform.shape[-1] - 2
    return _transformed(_tiles(_padded(x, tile), tile), input_transform, x.shape[1])


def _tracked_transformed_input(x: Tensor, input_transform: Tensor) -> Tensor:
    """:func:`_transformed_input` where gradients are recorded: the tiles by :class:`_Tiles`, whose
    backward pass is fast."""
    tile = input_transform.shape[-1] - 2
    return _transformed(_Tiles.apply(_padded(x, tile), input_transform), input_transform, x.shape[1])


@torch.jit.ignore
def _products_for_autograd(x, u, input_transform):  # unannotated: TorchScript takes Tensors (string annotations fail)
    """The tile products V U where gradients are recorded, without keeping V for the backward pass.
    The multiply's gradient for U needs V, the transformed input tiles (α²/tile² of the input's
    size: 2.25x for 4x4 tiles, 1.8x for 6x6), which autograd would keep until the backward pass:
    with every converted layer's, a vgg-16 training step at batch 8 peaked at about twice the memory
    of torch's convolutions. Instead the layer's input is kept (the previous ReLU keeps it anyway) and
    V is computed again from it when the backward pass needs it, one input transform more per layer:
    vgg-16 at 300 px, batch 8, peaked at 2.85 GiB against 4.49 keeping V (2.33 with torch's
    convolutions; 5.36 against 8.81 at 512 px), and its steps were faster too, 1.04 against 0.96
    images/s, alternating (bench/checks/training_memory.py, winograd_training.py --kept-tiles;
    docs/benchmarks.md, sixth session)."""
    v = _tracked_transformed_input(x, input_transform)
    key, version = (v.data_ptr(), v.shape), x._version

    def pack(saved: Tensor):
        return None if (saved.data_ptr(), saved.shape) == key else saved

    def unpack(packed: Tensor | None) -> Tensor:
        if packed is not None:
            return packed
        if x._version != version:
            raise RuntimeError("a Winograd convolution's input was modified in place after the forward pass; "
                               "its backward pass computes the transformed tiles again from that input")
        with torch.no_grad():
            return _transformed_input(x, input_transform)

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        return torch.bmm(v, u)


def _winograd_conv3x3(x: Tensor, u: Tensor, bias: Optional[Tensor], input_transform: Tensor,
                      output_transform: Tensor) -> Tensor:
    """One chunk. Written for TorchScript too, as is :func:`_tiles` (typing.Optional; the tile size
    comes from the transform's shape)."""
    alpha = input_transform.shape[-1]
    tile, positions = alpha - 2, alpha * alpha
    n, h, w = x.shape[0], x.shape[2], x.shape[3]
    c_out = u.shape[2]
    tiles_h, tiles_w = -(-h // tile), -(-w // tile)
    if torch.is_grad_enabled() and (x.requires_grad or u.requires_grad):
        m = _products_for_autograd(x, u, input_transform)
    else:
        m = torch.bmm(_transformed_input(x, input_transform), u)
    # m: α², tiles, C_out
    if bias is not None:
        # Column 1 of A^T is all ones (the point 1), so adding b at tile position (1, 1) adds b to all
        # outputs of the tile: the bias costs 1/α² of a pass over the products instead of a pass.
        m[alpha + 1].add_(bias)
    if output_transform.dim() == 3:  # A^T over the tiles' rows, then columns
        half = (output_transform[0] @ m.view(alpha, -1)).view(tile, alpha, -1)
        y = torch.matmul(output_transform, half).view(tile, tile, n, tiles_h, tiles_w, c_out)
    else:  # (A^T ⊗ A^T) over the flattened tile
        y = (output_transform @ m.view(positions, -1)).view(tile, tile, n, tiles_h, tiles_w, c_out)
    y = y.permute(2, 3, 0, 4, 1, 5).reshape(n, tile * tiles_h, tile * tiles_w, c_out)
    if tile * tiles_h != h or tile * tiles_w != w:
        y = y[:, :h, :w].contiguous()
    return y.permute(0, 3, 1, 2)


def _untraced_transform(weight: Tensor, tile: int) -> Tensor:
    """The transformed weight, computed outside any running trace: a traced graph then holds it as a
    constant instead of recomputing it on every call (``torch.jit.freeze`` does not fold einsum)."""
    state = torch._C._get_tracing_state()
    torch._C._set_tracing_state(None)
    try:
        with torch.no_grad():
            return transform_weight(weight, tile).contiguous()
    finally:
        torch._C._set_tracing_state(state)


class WinogradConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` (3x3, stride 1, padding 1, no dilation, one group, zero padding) computed with
    Winograd F(4x4, 3x3), or F(6x6, 3x3) on maps of :data:`LARGE_MAP_CELLS` or more, or by torch's
    own convolution where :func:`tile_for` says so. Built by :func:`use_winograd` from an existing
    convolution; the transformed weight is cached for inference (no autograd) and recomputed when
    the weight or the tile size changes (the weight's version counter) or while gradients are
    recorded."""

    _cached: tuple[tuple[int, int, torch.dtype, bool, int], Tensor] | None

    def forward(self, x: Tensor) -> Tensor:
        recording = torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad)
        tile = tile_for(x.shape[2], x.shape[3], self.in_channels, self.out_channels, backward=recording)
        if tile is None:
            return super().forward(x)
        weight = self.weight.to(x.dtype)
        if torch.is_grad_enabled() and weight.requires_grad:
            u = transform_weight(weight, tile)
        else:
            # A weight made in inference mode is an inference tensor: it has no version counter
            # (and training does not update it in place), and what is computed from it must not
            # reach autograd later, so the mode is part of the key.
            version = -1 if self.weight.is_inference() else self.weight._version
            key = (version, self.weight.data_ptr(), x.dtype, torch.is_inference_mode_enabled(), tile)
            if self._cached is None or self._cached[0] != key:
                self._cached = (key, _untraced_transform(weight, tile))
            u = self._cached[1]
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return winograd_conv3x3(x, u, bias)


def computable(conv: nn.Module) -> bool:
    """Whether ``conv`` is a plain ``nn.Conv2d`` that :class:`WinogradConv2d` computes: 3x3, stride
    1, padding 1, no dilation, one group, zero padding."""
    return (type(conv) is nn.Conv2d and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
            and conv.groups == 1 and conv.dilation == (1, 1) and conv.padding == (1, 1)
            and conv.padding_mode == "zeros")


def eligible(conv: nn.Module, training: bool = False) -> bool:
    """Whether ``conv`` is a convolution Winograd's algorithm computes exactly and faster on some
    maps: the harmonic mean of its channel counts reaches :data:`MIN_LARGE_MAP_CHANNELS` (the lower
    of the forward pass's two minimums), or for training :data:`MIN_TRAINING_CHANNELS`;
    :func:`tile_for` decides for each map."""
    return computable(conv) and _wide_enough(conv.in_channels, conv.out_channels,
                                             MIN_TRAINING_CHANNELS if training else MIN_LARGE_MAP_CHANNELS)


def convert(conv: nn.Conv2d) -> WinogradConv2d:
    """``conv`` itself, made a :class:`WinogradConv2d` (same parameters, same object)."""
    conv.__class__ = WinogradConv2d
    conv._cached = None
    return conv


def unconvert(conv: WinogradConv2d) -> nn.Conv2d:
    """``conv`` itself, made a plain ``nn.Conv2d`` again (:func:`convert` undone)."""
    conv.__class__ = nn.Conv2d
    conv.__dict__.pop("_cached", None)
    return conv


def use_winograd(model: nn.Module, training: bool = False) -> list[str]:
    """Convert every eligible convolution of ``model`` in place (with ``training``, also those that
    pay only with a backward pass); returns their names. For the CPU: CUDA has cuDNN's own
    algorithms."""
    names = []
    for name, module in model.named_modules():
        if eligible(module, training):
            convert(module)
            names.append(name)
    return names
