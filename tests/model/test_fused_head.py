"""The inference head with each map's class and box convolutions stacked into one convolution."""

from __future__ import annotations

import copy

import pytest
import torch
from torchvision.models.detection.ssd import SSDHead

from sagedet.export.graph import DetectionGraph
from sagedet.model.fused_head import FusedSSDHead, fuse_head
from sagedet.model.ssd import build_ssd
from sagedet.model.winograd import WinogradConv2d, use_winograd


def feature_maps(model, size: int, batch: int = 2) -> list[torch.Tensor]:
    images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return model.features((images - model.image_mean) / model.image_std)


@pytest.mark.parametrize("network, size", [("vgg-16", 300), ("resnet-50", 300), ("vgg-16", 512)])
def test_the_stacked_head_gives_the_heads_outputs(network: str, size: int):
    model = build_ssd(network, 20, size).eval()
    maps = feature_maps(model, size)
    fused = fuse_head(model.head)
    assert isinstance(fused, FusedSSDHead) and len(fused.convs) == len(maps)
    # 20 classes + background, 4 or 6 boxes a cell: the class channels first, then the box codes
    assert [c.out_channels for c in fused.convs][:2] == [4 * 21 + 4 * 4, 6 * 21 + 6 * 4]
    with torch.no_grad():
        want, got = model.head(maps), fused(maps)
    for key in ("cls_logits", "bbox_regression"):
        assert got[key].shape == want[key].shape
        assert want[key].std() > 1e-3
        torch.testing.assert_close(got[key], want[key], atol=1e-5, rtol=1e-4)


def test_only_ssds_plain_head_is_stacked_and_stacking_twice_changes_nothing():
    mobilenet = build_ssd("mobilenet-v3", 3, 160)
    assert fuse_head(mobilenet.head) is mobilenet.head  # SSDlite's depthwise-separable head
    fused = fuse_head(build_ssd("vgg-16", 3, 300).head)
    assert fuse_head(fused) is fused


def test_the_exported_graph_stacks_its_own_copy_and_leaves_the_model_alone():
    model = build_ssd("vgg-16", 3, 268).eval()
    before = {name: p.clone() for name, p in model.head.named_parameters()}
    graph = DetectionGraph(model)
    assert type(model.head) is SSDHead and isinstance(graph.model.head, FusedSSDHead)
    assert all(torch.equal(p, before[name]) for name, p in model.head.named_parameters())
    images = torch.rand(2, 3, 268, 268, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        scores, boxes = graph(images)
        want_scores, want_boxes = model.decode(*model(images))
    torch.testing.assert_close(scores, want_scores, atol=1e-5, rtol=0)
    torch.testing.assert_close(boxes, want_boxes, atol=1e-5, rtol=0)


def test_the_stacked_convolutions_are_wide_enough_for_winograd_where_the_box_ones_were_not():
    model = build_ssd("vgg-16", 20, 300).eval()
    separate = copy.deepcopy(model)
    converted = use_winograd(separate)
    assert "head.regression_head.module_list.0" not in converted  # 512 -> 16: harmonic mean 30
    stacked = copy.deepcopy(model)
    stacked.head = fuse_head(stacked.head)
    converted = use_winograd(stacked)
    assert {"head.convs.0", "head.convs.1"} <= set(converted)  # 512 -> 100 at 38x38, 1024 -> 150 at 19x19
    assert isinstance(stacked.head.convs[0], WinogradConv2d)
    maps = feature_maps(stacked, 300, batch=1)
    with torch.no_grad():
        want, got = separate.head(maps), stacked.head(maps)
    for key in ("cls_logits", "bbox_regression"):
        torch.testing.assert_close(got[key], want[key], atol=1e-4, rtol=1e-3)
