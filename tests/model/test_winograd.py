"""Winograd F(4x4, 3x3) and F(6x6, 3x3) convolutions: the same values and gradients as torch's
convolution, which layers are converted and which tile each map gets, the converted module's
caching, tracing and a whole converted model."""

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sagedet.model import winograd
from sagedet.model.ssd import build_ssd
from sagedet.model.winograd import (LARGE_MAP_CELLS, MIN_MAP_CELLS, WinogradConv2d, eligible, tile_for, toom_cook,
                                    use_winograd)


def converted(conv: nn.Conv2d) -> nn.Conv2d:
    copied = copy.deepcopy(conv)
    assert use_winograd(nn.Sequential(copied)) == ["0"]
    assert type(copied) is WinogradConv2d
    return copied


@pytest.mark.parametrize("c_in, c_out, height, width, batch, bias", [
    (128, 256, 19, 19, 2, True),   # 19 is not a multiple of the 4-cell tile: the last tiles are cropped
    (256, 256, 16, 24, 1, False),
    (200, 160, 17, 23, 3, True),
    (256, 512, 32, 32, 1, True),
    (128, 128, 64, 70, 2, True),   # 6x6 tiles from 64x64 cells on; 70 is not a multiple of 6
    (160, 200, 67, 65, 1, False),
])
def test_values_and_gradients_equal_torch_convolution_in_float64(c_in, c_out, height, width, batch, bias):
    # In float64 the only difference left is rounding: the algorithm itself must be exact.
    torch.manual_seed(0)
    conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=bias).double()
    fast = converted(conv)
    x = torch.randn(batch, c_in, height, width, dtype=torch.float64, requires_grad=True)
    expected, got = conv(x), fast(x)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
    grad = torch.randn_like(expected)
    wanted = torch.autograd.grad(expected, [x, conv.weight] + ([conv.bias] if bias else []), grad)
    found = torch.autograd.grad(got, [x, fast.weight] + ([fast.bias] if bias else []), grad)
    for a, b in zip(found, wanted):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("tile", [4, 6])
@pytest.mark.parametrize("size", [1, 3])
def test_the_function_itself_takes_maps_of_any_size(tile, size):
    # The module leaves maps under MIN_MAP_CELLS to torch, but the function computes them: a 1x1
    # channels-last batch is also NCHW-contiguous, and its padded tiles come out in another layout.
    torch.manual_seed(5)
    conv = nn.Conv2d(64, 16, 3, padding=1).double()
    x = torch.randn(8, 64, size, size, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    got = winograd.winograd_conv3x3(x, winograd.transform_weight(conv.weight, tile), conv.bias)
    expected = conv(x)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(torch.autograd.grad(got.sum(), x)[0], torch.autograd.grad(expected.sum(), x)[0],
                               rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("images_per_chunk", [1, 2])
def test_a_batch_over_the_chunk_goes_in_whole_image_chunks_with_the_same_values_and_gradients(
        images_per_chunk, monkeypatch):
    torch.manual_seed(2)
    conv = nn.Conv2d(200, 160, 3, padding=1).double()
    fast = converted(conv)
    # 17x23 is 5x6 tiles; the larger channel count is 200: 6,000 tile-channels an image
    monkeypatch.setattr(winograd, "CHUNK", 6000 * images_per_chunk + 1)
    calls = []
    original = winograd._winograd_conv3x3
    monkeypatch.setattr(winograd, "_winograd_conv3x3", lambda x, *a: calls.append(len(x)) or original(x, *a))
    x = torch.randn(5, 200, 17, 23, dtype=torch.float64, requires_grad=True)
    expected, got = conv(x), fast(x)
    assert calls == [images_per_chunk] * (5 // images_per_chunk) + [5 % images_per_chunk] * (5 % images_per_chunk > 0)
    assert got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
    grad = torch.randn_like(expected)
    wanted = torch.autograd.grad(expected, [x, conv.weight, conv.bias], grad)
    found = torch.autograd.grad(got, [x, fast.weight, fast.bias], grad)
    for a, b in zip(found, wanted):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("height, tile_calls", [(19, 1), (70, 1)])  # 4x4 and 6x6 tiles
def test_training_keeps_the_input_and_computes_the_transformed_tiles_again_in_the_backward_pass(
        height, tile_calls, monkeypatch):
    # The transformed tiles V (about twice the input's size) are not kept for the backward pass: the
    # multiply's gradient for the weight gets them computed again from the layer's input.
    torch.manual_seed(9)
    conv = nn.Conv2d(128, 128, 3, padding=1).double()
    fast = converted(conv)
    calls = []
    original = winograd._transformed
    monkeypatch.setattr(winograd, "_transformed", lambda *a: calls.append(torch.is_grad_enabled()) or original(*a))
    x = torch.randn(2, 128, height, height, dtype=torch.float64, requires_grad=True)
    got = fast(x)
    assert calls == [True] * tile_calls  # forward, recorded
    grad = torch.randn_like(got)
    found = torch.autograd.grad(got, [x, fast.weight, fast.bias], grad)
    assert calls == [True] * tile_calls + [False] * tile_calls  # once more in the backward pass, not recorded
    wanted = torch.autograd.grad(conv(x), [x, conv.weight, conv.bias], grad)
    for a, b in zip(found, wanted):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_an_input_changed_in_place_before_the_backward_pass_is_refused():
    fast = converted(nn.Conv2d(128, 128, 3, padding=1))
    x = torch.randn(1, 128, 20, 20, requires_grad=True) * 1
    y = fast(x)
    x.add_(1)
    with pytest.raises(RuntimeError, match="Winograd convolution's input was modified in place after the forward"):
        y.sum().backward()


def test_the_tile_matrices_are_lavin_and_grays():
    # F(4x4, 3x3) as printed in Lavin and Gray (2016); toom_cook builds them (and F(6x6, 3x3)'s) from the points
    bt, g, at = toom_cook(4)
    assert torch.equal(bt, torch.tensor([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                                         [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
                                        dtype=torch.float64))
    torch.testing.assert_close(g, torch.tensor([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                                                [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
                                               dtype=torch.float64), rtol=0, atol=1e-15)
    assert torch.equal(at, torch.tensor([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
                                         [0, 1, -1, 8, -8, 1]], dtype=torch.float64))
    assert [m.shape for m in toom_cook(6)] == [(8, 8), (8, 3), (6, 8)]


@pytest.mark.parametrize("height, width, channels, tile", [
    (15, 17, 256, None),   # under MIN_MAP_CELLS: torch's convolution
    (16, 16, 256, 4), (38, 38, 512, 4), (63, 65, 256, 4),
    (64, 64, 256, 6), (75, 75, 256, 6), (150, 150, 128, 6),
    (256, 256, 128, None),  # one image's 6x6 tiles: 64 x 43 x 43 x 128 floats, over MAX_IMAGE_FLOATS
    (180, 180, 128, 6),     # 64 x 30 x 30 x 128: under it
])
def test_tile_size_by_map(height, width, channels, tile):
    assert tile_for(height, width, channels, channels) == tile
    assert height * width < MIN_MAP_CELLS or tile is None or (height * width >= LARGE_MAP_CELLS) == (tile == 6)
    # with a backward pass the size limit does not apply (oneDNN's gradient convolutions are slower)
    assert tile_for(height, width, channels, channels, backward=True) == (
        None if height * width < MIN_MAP_CELLS else 6 if height * width >= LARGE_MAP_CELLS else 4)


@pytest.mark.parametrize("c_in, c_out, small_map, large_map, backward", [
    (128, 128, True, True, True), (512, 84, True, True, True),
    # harmonic means 85 and 96: in a forward pass on maps taking 6x6 tiles only (MIN_LARGE_MAP_CHANNELS)
    (64, 128, False, True, True), (96, 96, False, True, True),
    (64, 64, False, False, True),   # 64: for training steps only
    (64, 32, False, False, False), (3, 64, False, False, False),   # 43 and 6: never
])
def test_narrower_layers_by_map_size_and_with_a_backward_pass(c_in, c_out, small_map, large_map, backward):
    assert tile_for(40, 40, c_in, c_out) == (4 if small_map else None)
    assert tile_for(72, 72, c_in, c_out) == (6 if large_map else None)
    assert tile_for(40, 40, c_in, c_out, backward=True) == (4 if backward else None)
    assert tile_for(72, 72, c_in, c_out, backward=True) == (6 if backward else None)
    conv = nn.Conv2d(c_in, c_out, 3, padding=1)
    assert eligible(conv) is (small_map or large_map) and eligible(conv, training=True) is backward


def test_a_layer_converted_for_training_runs_torch_convolution_in_a_forward_pass_alone(monkeypatch):
    torch.manual_seed(6)
    model = nn.Sequential(nn.Conv2d(64, 64, 3, padding=1))
    assert use_winograd(copy.deepcopy(model)) == []
    conv = model[0]
    assert use_winograd(model, training=True) == ["0"] and type(conv) is WinogradConv2d
    calls = []
    original = winograd._winograd_conv3x3
    monkeypatch.setattr(winograd, "_winograd_conv3x3", lambda x, *a: calls.append(len(x)) or original(x, *a))
    x = torch.randn(2, 64, 20, 20)
    with torch.no_grad():  # validation
        assert torch.equal(conv(x), F.conv2d(x, conv.weight, conv.bias, padding=1)) and calls == []
    x.requires_grad_(True)
    conv(x).square().sum().backward()  # a training step
    assert calls == [2]
    grads = torch.autograd.grad(F.conv2d(x, conv.weight, conv.bias, padding=1).square().sum(), [x, conv.weight])
    torch.testing.assert_close(x.grad, grads[0], rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(conv.weight.grad, grads[1], rtol=1e-3, atol=1e-2)


def test_a_map_whose_tiles_exceed_the_limit_runs_torch_convolution(monkeypatch):
    monkeypatch.setattr(winograd, "MAX_IMAGE_FLOATS", 64 * 4 * 4 * 128 - 1)  # just under a 24x24 map's 6x6 tiles
    conv = converted(nn.Conv2d(128, 128, 3, padding=1))
    x = torch.randn(1, 128, 24, 24)
    monkeypatch.setattr(winograd, "LARGE_MAP_CELLS", 24 * 24)
    with torch.no_grad():
        assert torch.equal(conv(x), F.conv2d(x, conv.weight, conv.bias, padding=1))
    # recording gradients, the same layer is Winograd's (and its gradients are right)
    calls = []
    original = winograd._winograd_conv3x3
    monkeypatch.setattr(winograd, "_winograd_conv3x3", lambda x, *a: calls.append(len(x)) or original(x, *a))
    x.requires_grad_(True)
    conv(x).square().sum().backward()
    assert calls == [1]
    expected = torch.autograd.grad(F.conv2d(x, conv.weight, conv.bias, padding=1).square().sum(), x)[0]
    torch.testing.assert_close(x.grad, expected, rtol=1e-3, atol=1e-3)
    monkeypatch.setattr(winograd, "MAX_IMAGE_FLOATS", 64 * 4 * 4 * 128)
    with torch.no_grad():
        assert not torch.equal(conv(x), F.conv2d(x, conv.weight, conv.bias, padding=1))  # now Winograd's
    assert calls == [1, 1]


def test_one_module_on_maps_of_both_tile_sizes_keeps_its_cache_right():
    torch.manual_seed(4)
    conv = converted(nn.Conv2d(128, 128, 3, padding=1))
    small, large = torch.randn(1, 128, 20, 20), torch.randn(1, 128, 64, 66)
    with torch.no_grad():
        for x in (small, large, small, large):
            torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight, conv.bias, padding=1), rtol=1e-4, atol=1e-4)
        assert conv._cached[1].shape[0] == 64  # the last map's transformed weight: 8x8 input tiles


@pytest.mark.parametrize("channels, size", [(512, 38), (256, 75)])  # 4x4 tiles, then 6x6
def test_float32_error_is_a_few_times_rounding(channels, size):
    torch.manual_seed(1)
    conv = nn.Conv2d(channels, channels, 3, padding=1)
    fast = converted(conv)
    x = torch.randn(1, channels, size, size)
    with torch.no_grad():
        exact = F.conv2d(x.double(), conv.weight.double(), conv.bias.double(), padding=1)
        error = (fast(x).double() - exact).abs().max() / exact.abs().max()
        direct_error = (conv(x).double() - exact).abs().max() / exact.abs().max()
    assert error < 1e-4, error
    assert error > 0  # it is computed differently from torch's convolution, not handed over to it
    assert direct_error < error  # and is less exact than the direct convolution, as expected


def test_output_is_channels_last_whatever_the_input_layout():
    conv = converted(nn.Conv2d(256, 256, 3, padding=1))
    with torch.no_grad():
        plain = torch.randn(2, 256, 18, 18)
        for x in (plain, plain.contiguous(memory_format=torch.channels_last)):
            out = conv(x)
            assert out.is_contiguous(memory_format=torch.channels_last)
            torch.testing.assert_close(out, F.conv2d(x, conv.weight, conv.bias, padding=1), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("conv, expected", [
    (nn.Conv2d(256, 256, 3, padding=1), True),
    (nn.Conv2d(128, 128, 3, padding=1), True),
    (nn.Conv2d(1024, 324, 3, padding=1), True),   # a class head for 80 classes
    (nn.Conv2d(1024, 84, 3, padding=1), True),    # a class head for 20 classes: 0.66x oneDNN's time
    (nn.Conv2d(512, 84, 3, padding=1), True),     # harmonic mean 144
    # harmonic means 114 and 126.5: converted, computed by Winograd on maps taking 6x6 tiles only
    (nn.Conv2d(512, 64, 3, padding=1), True),
    (nn.Conv2d(256, 84, 3, padding=1), True),
    (nn.Conv2d(64, 32, 3, padding=1), False),     # harmonic mean 43
    (nn.Conv2d(64, 128, 3, padding=1), True),     # harmonic mean 85: on maps taking 6x6 tiles
    (nn.Conv2d(64, 64, 3, padding=1), False),     # 64: slower than oneDNN without a backward pass
    (nn.Conv2d(1024, 16, 3, padding=1), False),   # a box head, 3x slower
    (nn.Conv2d(256, 256, 3, stride=2, padding=1), False),
    (nn.Conv2d(256, 256, 3, padding=0), False),
    (nn.Conv2d(256, 256, 3, padding=6, dilation=6), False),
    (nn.Conv2d(256, 256, 3, padding=1, groups=2), False),
    (nn.Conv2d(256, 256, 1), False),
    (nn.Conv2d(256, 256, 3, padding=1, padding_mode="reflect"), False),
    (nn.Linear(256, 256), False),
])
def test_eligible_layers(conv, expected):
    assert eligible(conv) is expected


def test_conversion_keeps_parameters_names_and_identity():
    model = nn.Sequential(nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.Conv2d(256, 128, 3, padding=1),
                          nn.Conv2d(128, 32, 3, padding=1))
    first, weight = model[0], model[0].weight
    keys = list(model.state_dict())
    names = use_winograd(model)
    assert names == ["0", "2"]
    assert model[0] is first and model[0].weight is weight  # in place: optimizers and layer maps still hold them
    assert type(model[3]) is nn.Conv2d
    assert list(model.state_dict()) == keys
    assert use_winograd(model) == []  # converted ones are not converted again


def test_small_maps_are_left_to_torch_convolution():
    conv = converted(nn.Conv2d(256, 256, 3, padding=1))
    x = torch.randn(1, 256, 10, 10)
    assert 10 * 10 < MIN_MAP_CELLS
    with torch.no_grad():
        assert torch.equal(conv(x), F.conv2d(x, conv.weight, conv.bias, padding=1))


def test_cached_weight_follows_optimizer_steps():
    torch.manual_seed(2)
    conv = converted(nn.Conv2d(256, 256, 3, padding=1))
    x = torch.randn(1, 256, 16, 16)
    optimizer = torch.optim.SGD(conv.parameters(), lr=0.5)
    for _ in range(2):
        with torch.no_grad():
            before = conv(x)  # caches the transformed weight
        conv(x).square().mean().backward()
        optimizer.step()
        optimizer.zero_grad()
        with torch.no_grad():
            after = conv(x)
            expected = F.conv2d(x, conv.weight, conv.bias, padding=1)
        assert not torch.allclose(before, after)
        torch.testing.assert_close(after, expected, rtol=1e-4, atol=1e-4)


def test_inference_mode_then_training_with_a_frozen_layer():
    # A weight cached under inference mode must not reach autograd (inference tensors cannot be saved).
    conv = converted(nn.Conv2d(256, 256, 3, padding=1))
    conv.weight.requires_grad_(False)
    x = torch.randn(1, 256, 16, 16, requires_grad=True)
    with torch.inference_mode():
        conv(x.detach())
    conv(x).sum().backward()
    torch.testing.assert_close(x.grad, torch.autograd.grad(F.conv2d(x, conv.weight, conv.bias, padding=1).sum(), x)[0],
                               rtol=1e-4, atol=1e-4)


def test_traced_and_frozen_graph_holds_the_transformed_weight_as_a_constant():
    conv = converted(nn.Conv2d(256, 256, 3, padding=1)).eval()
    x = torch.randn(2, 256, 20, 20)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frozen = torch.jit.freeze(torch.jit.trace(conv, x))
        assert "einsum" not in str(frozen.graph)  # not recomputed on every call
        torch.testing.assert_close(frozen(x), conv(x))


@pytest.mark.parametrize("size", [20, 64])  # 4x4 tiles, 6x6 tiles
def test_a_traced_graph_splits_any_batch_size_into_chunks(size, monkeypatch):
    monkeypatch.setattr(winograd, "CHUNK", 1)  # eagerly, one image a chunk
    conv = converted(nn.Conv2d(128, 128, 3, padding=1)).eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frozen = torch.jit.freeze(torch.jit.trace(conv, torch.randn(2, 128, size, size)))
        assert "prim::Loop" in str(frozen.graph)  # the chunks are a loop in the graph, not unrolled
        for batch in (1, 3, 5):
            x = torch.randn(batch, 128, size, size)
            torch.testing.assert_close(frozen(x), F.conv2d(x, conv.weight, conv.bias, padding=1),
                                       rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("num_classes, heads", [
    # with 3 classes the class heads have 16 or 24 output channels, too few to pay
    (3, []),
    # with 20, 84 or 126: every class head (those on 38x38 and 19x19 maps run Winograd; those on 10x10 to
    # 1x1 maps are converted but run torch's convolution, below MIN_MAP_CELLS)
    (20, [f"head.classification_head.module_list.{level}" for level in range(6)]),
])
def test_converted_vgg16_detector_gives_the_same_outputs(num_classes, heads):
    model = build_ssd("vgg-16", num_classes, 300).eval()
    fast = copy.deepcopy(model)
    names = use_winograd(fast)
    # conv2_1 … conv5_3 and the three extra 3x3 layers at 19x19, then the wide class heads
    assert names[0] == "features.extractor.features.5" and len(names) == 11 + len(heads)
    assert [name for name in names if name.startswith("head.")] == heads
    images = torch.rand(1, 3, 300, 300)
    with torch.no_grad():
        for expected, got in zip(model(images), fast(images)):
            torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("training, layers", [(False, 11), (True, 12)])  # as the server, as the Trainer converts it
def test_loss_and_every_gradient_of_a_converted_detector_match_the_original_in_float64(training, layers):
    # Through the whole vgg-16 SSD: loss with hard negative mining, backward, every parameter's
    # gradient. In float64, so that rounding cannot flip a ReLU, a max-pool choice or a mined
    # negative (in float32 the *direct* model's own gradients differ from float64 by up to 8% in
    # a layer for this reason, and the converted model's by less).
    torch.manual_seed(3)
    model = build_ssd("vgg-16", 3, 268).double()
    fast = copy.deepcopy(model)
    assert len(use_winograd(fast, training=training)) == layers
    images = torch.rand(2, 3, 268, 268, dtype=torch.float64)
    boxes = torch.tensor([[[0.1, 0.1, 0.5, 0.6]], [[0.3, 0.2, 0.9, 0.8]]], dtype=torch.float64)
    labels = torch.tensor([[0], [2]])
    losses = []
    for detector in (model, fast):
        loss = sum(detector.loss(*detector(images), boxes, labels).values())
        loss.backward()
        losses.append(loss.detach())
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-10, atol=0)
    checked = 0
    for (name, a), (_, b) in zip(model.named_parameters(), fast.named_parameters()):
        scale = a.grad.abs().max()
        if scale > 0:
            assert (b.grad - a.grad).abs().max() <= 1e-8 * scale, name
            checked += 1
    assert checked > 60
