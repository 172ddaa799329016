"""The CPU Trainer's per-layer timing of Winograd against torch's convolution: which layers are timed, on
what shapes, that the slower are given back to torch's convolution with their parameters, and that the
timing pass leaves the model as it was (batch-norm statistics, training mode)."""

import copy

import torch
from torch import nn

from sagedet.model import winograd_tuning
from sagedet.model.ssd import build_ssd
from sagedet.model.winograd import WinogradConv2d, tile_for, use_winograd
from sagedet.model.winograd_tuning import LayerTiming, describe, measure, time_layer, use_torch_convolution


def converted_vgg(image_shape: int = 268) -> tuple[nn.Module, list[str]]:
    torch.manual_seed(0)
    model = build_ssd("vgg-16", 3, image_shape).train()
    return model, use_winograd(model, training=True)


def test_every_layer_that_computes_by_winograd_in_training_is_timed_on_its_own_map_and_the_batch():
    model, names = converted_vgg()
    seen = []

    def timer(conv, shape, channels_last, rounds):
        seen.append((conv, shape, channels_last, rounds))
        return 2.0, 1.0

    timings = measure(model, 268, batch=32, channels_last=False, timer=timer)
    modules = dict(model.named_modules())
    # at 268 px every converted layer's map has at least 16x16 cells: all are timed, in model order
    assert [t.name for t in timings] == names
    assert all(conv is modules[t.name] for (conv, *_), t in zip(seen, timings))
    shapes = {t.name: t.shape for t in timings}
    assert shapes["features.extractor.features.2"] == (8, 64, 268, 268)  # conv1_2; the batch capped at 8
    assert shapes["features.extractor.features.21"] == (8, 512, 34, 34)  # conv4_3
    assert all(t.winograd_wins for t in timings)
    assert {(channels_last, rounds) for _, _, channels_last, rounds in seen} == {(False, 2)}
    assert measure(model, 268, batch=2, channels_last=False, timer=timer)[0].shape[0] == 2


def test_layers_left_to_torch_on_their_map_are_not_timed():
    torch.manual_seed(0)
    model = build_ssd("vgg-16", 20, 268).train()  # 20 classes: the class heads are wide enough to convert
    names = use_winograd(model, training=True)
    shapes = {}
    for name, module in model.named_modules():
        if name in names:
            module.register_forward_pre_hook(lambda _, inputs, name=name: shapes.update({name: inputs[0].shape})
                                             and None)
    with torch.no_grad():
        model(torch.zeros(1, 3, 268, 268))
    timings = measure(model, 268, batch=1, channels_last=False, timer=lambda *_: (1.0, 2.0))
    untimed = set(names) - {t.name for t in timings}
    assert untimed == {name for name in names if tile_for(*shapes[name][2:], shapes[name][1],
                                                          dict(model.named_modules())[name].out_channels,
                                                          backward=True) is None}
    # the class heads on the 9x9 map and smaller (512 -> 126, 256 -> 126, ...)
    assert untimed == {f"head.classification_head.module_list.{i}" for i in (2, 3, 4, 5)}


def test_the_slower_layers_are_given_back_to_torch_with_their_parameters_and_the_same_outputs():
    model, names = converted_vgg()
    slower = {"features.extractor.features.2", "features.extractor.features.7"}
    timings = measure(model, 268, batch=2, channels_last=False,
                      timer=lambda conv, *_: (1.0, 3.0) if conv in [dict(model.named_modules())[n] for n in slower]
                      else (3.0, 1.0))
    assert {t.name for t in timings if not t.winograd_wins} == slower
    modules = dict(model.named_modules())
    before = {name: (modules[name].weight, modules[name].bias) for name in slower}
    reference = copy.deepcopy(model)
    use_torch_convolution(model, winograd_tuning.slower_layers(timings))
    modules = dict(model.named_modules())
    for name in names:
        assert (type(modules[name]) is nn.Conv2d) is (name in slower)
    for name, (weight, bias) in before.items():
        assert modules[name].weight is weight and modules[name].bias is bias
    assert model.state_dict().keys() == reference.state_dict().keys()
    x = torch.randn(1, 64, 40, 40)
    with torch.no_grad():
        torch.testing.assert_close(modules["features.extractor.features.2"](x),
                                   dict(reference.named_modules())["features.extractor.features.2"](x),
                                   rtol=1e-4, atol=1e-4)
    line = describe(timings, 12.3)
    assert f"Winograd kept for {len(names) - 2} of {len(names)} layers" in line and "torch's convolution for 2" in line
    assert "features.extractor.features.2 (3 ms against 1)" in line


def test_timing_a_layer_runs_both_ways_and_leaves_the_layer_alone():
    torch.manual_seed(0)
    conv = nn.Conv2d(128, 128, 3, padding=1)
    use_winograd(nn.Sequential(conv))
    weight = conv.weight.detach().clone()
    torch_ms, winograd_ms = time_layer(conv, (1, 128, 20, 20), channels_last=True, rounds=1)
    assert torch_ms > 0 and winograd_ms > 0
    assert type(conv) is WinogradConv2d and conv.weight.grad is None and torch.equal(conv.weight, weight)


def test_the_timing_pass_keeps_batch_norm_statistics_and_the_training_mode():
    torch.manual_seed(0)
    model = build_ssd("resnet-50", 3, 257).train()
    use_winograd(model, training=True)
    state = copy.deepcopy(model.state_dict())
    timings = measure(model, 257, batch=1, channels_last=True, timer=lambda *_: (1.0, 2.0))
    assert timings and model.training
    assert all(torch.equal(value, model.state_dict()[key]) for key, value in state.items())


def test_a_stop_request_ends_the_timing_and_the_untimed_layers_keep_winograd():
    model, names = converted_vgg()
    calls = []
    timings = measure(model, 268, batch=1, channels_last=False, stop=lambda: len(calls) >= 2,
                      timer=lambda *args: calls.append(args) or (1.0, 2.0))
    assert len(timings) == 2
    use_torch_convolution(model, winograd_tuning.slower_layers(timings))
    assert sum(isinstance(m, WinogradConv2d) for m in model.modules()) == len(names) - 2


def test_describe_without_layers():
    assert describe([], 0.0) == "no layer computes by Winograd at this image_shape"
    assert LayerTiming("a", (1, 1, 1, 1), 2.0, 1.0).winograd_wins
    assert not LayerTiming("a", (1, 1, 1, 1), 1.0, 1.0).winograd_wins
    assert winograd_tuning.MAX_IMAGES == 8
