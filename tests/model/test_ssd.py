"""The SSD model: shapes for each base network, loss, decoding, freezing, size limits."""

import pytest
import torch
from torchvision.models.detection._utils import BoxCoder

from sagedet.errors import ConfigError
from sagedet.model.ssd import BOX_CODER_WEIGHTS, build_ssd, minimum_image_shape


@pytest.mark.parametrize("base_network, image_shape, num_anchors, maps", [
    ("vgg-16", 300, 8732, [38, 19, 10, 5, 3, 1]),
    ("resnet-50", 300, 8732, [38, 19, 10, 5, 3, 1]),
    ("vgg-16", 512, 24732, [64, 32, 16, 8, 6, 4, 1]),
    ("mobilenet-v3", 320, 3234, [20, 10, 5, 3, 2, 1]),
])
def test_feature_maps_and_default_boxes(base_network, image_shape, num_anchors, maps):
    model = build_ssd(base_network, 4, image_shape).eval()
    images = torch.rand(1, 3, image_shape, image_shape)
    with torch.no_grad():
        features = model.features((images - model.image_mean) / model.image_std)
        cls_logits, box_codes = model(images)
    assert [f.shape[-1] for f in features] == maps
    assert model.anchors.shape == (num_anchors, 4)
    assert cls_logits.shape == (1, num_anchors, 5)  # 4 classes + background
    assert box_codes.shape == (1, num_anchors, 4)


def test_vgg16_300_has_the_default_boxes_of_torchvisions_ssd300():
    from torchvision.models.detection import ssd300_vgg16

    reference = ssd300_vgg16(weights=None, weights_backbone=None, num_classes=5)
    assert reference.anchor_generator.num_anchors_per_location() == [4, 6, 6, 6, 4, 4]
    model = build_ssd("vgg-16", 4, 300)
    assert model.anchors.shape[0] == sum(n * m * m for n, m in zip([4, 6, 6, 6, 4, 4], [38, 19, 10, 5, 3, 1]))


def test_loss_is_finite_with_an_image_without_objects_and_falls_when_fitting_one_batch():
    torch.manual_seed(0)
    model = build_ssd("mobilenet-v3", 2, 96)
    images = torch.rand(2, 3, 96, 96)
    boxes = torch.tensor([[[0.1, 0.1, 0.6, 0.7]], [[0.0, 0.0, 0.0, 0.0]]])
    labels = torch.tensor([[1], [-1]])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(30):
        terms = model.loss(*model(images), boxes, labels)
        loss = terms["cross_entropy"] + terms["smooth_l1"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.5 * losses[0]


def test_the_box_loss_targets_are_torchvisions_box_coder_encodings():
    """Box codes equal to torchvision's BoxCoder encoding of the ground truth against every anchor give a
    zero box loss (the loss encodes with its own weights buffer, which moves with the model, instead)."""
    model = build_ssd("mobilenet-v3", 3, 128)
    gt_boxes, gt_labels = torch.tensor([[[0.2, 0.3, 0.5, 0.8]]]), torch.tensor([[1]])
    anchors = model.anchors
    exact = BoxCoder(BOX_CODER_WEIGHTS).encode_single(gt_boxes[0].expand(len(anchors), 4), anchors)[None]
    logits = torch.zeros(1, len(anchors), 4)
    assert model.loss(logits, exact, gt_boxes, gt_labels)["smooth_l1"].item() < 1e-5
    shifted = BoxCoder(BOX_CODER_WEIGHTS).encode_single((gt_boxes[0] + 0.05).expand(len(anchors), 4), anchors)[None]
    assert model.loss(logits, shifted, gt_boxes, gt_labels)["smooth_l1"].item() > 0.1
    assert "box_weights" not in model.state_dict()  # saved models are unchanged


def test_decoding_recovers_an_encoded_box_and_labels_are_class_ids():
    model = build_ssd("mobilenet-v3", 3, 128).eval()
    anchors = model.anchors
    target = torch.tensor([[0.2, 0.3, 0.5, 0.8]])
    anchor_index = 17
    codes = torch.zeros(1, anchors.shape[0], 4)
    codes[0, anchor_index] = BoxCoder(BOX_CODER_WEIGHTS).encode_single(
        target, anchors[anchor_index:anchor_index + 1])[0]
    logits = torch.full((1, anchors.shape[0], 4), -10.0)
    logits[..., 0] = 10.0  # background everywhere ...
    logits[0, anchor_index] = torch.tensor([-10.0, -10.0, -10.0, 10.0])  # ... but class id 2 here
    (detections,) = model.postprocess(logits, codes, nms_threshold=0.45)
    assert detections.labels.tolist() == [2]
    assert torch.allclose(detections.boxes, target, atol=1e-5)
    assert detections.scores[0] > 0.99


def test_freeze_layer_pattern_uses_the_builtin_vgg_names():
    model = build_ssd("vgg-16", 2, 300)
    frozen = model.freeze("^(conv1_|conv2_).*")
    assert frozen == ["conv1_1", "conv1_2", "conv2_1", "conv2_2"]
    assert not model.base_layers["conv2_2"].weight.requires_grad
    assert model.base_layers["conv3_1"].weight.requires_grad
    assert set(model.base_layers) >= {"conv5_3", "fc6", "fc7"}


def test_frozen_batch_norm_keeps_its_statistics_in_training():
    model = build_ssd("resnet-50", 2, 300)
    assert model.freeze("^(conv1|bn1|layer1)") [:2] == ["conv1", "bn1"]
    model.train()
    assert not model.base_layers["bn1"].training
    assert model.base_layers["layer2.0.bn1"].training


def test_frozen_batch_norm_stays_frozen_under_sync_batch_norm():
    """Several processes on CUDA convert resnet-50's norms to SyncBatchNorm (new modules) after the
    freeze: the frozen ones must still keep their running statistics, and the table name the new ones.
    The conversion runs on the CPU too; only SyncBatchNorm's forward pass needs CUDA."""
    model = build_ssd("resnet-50", 2, 300)
    model.freeze("^(conv1|bn1|layer1)")
    model.synchronize_batch_norm().train()
    modules = dict(model.named_modules())
    norms = [module for module in modules.values() if isinstance(module, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and all(isinstance(norm, torch.nn.SyncBatchNorm) for norm in norms)
    assert all(any(layer is module for module in modules.values()) for layer in model.base_layers.values())
    assert isinstance(model.base_layers["bn1"], torch.nn.SyncBatchNorm) and not model.base_layers["bn1"].training
    assert not model.base_layers["layer1.0.bn1"].training
    assert model.base_layers["layer2.0.bn1"].training
    assert not model.base_layers["bn1"].weight.requires_grad


def test_freeze_pattern_matching_nothing_names_the_layers():
    model = build_ssd("mobilenet-v3", 2, 128)
    with pytest.raises(ConfigError, match=r"'freeze_layer_pattern'='conv1_' matches none .*features\.0\.0"):
        model.freeze("conv1_")


@pytest.mark.parametrize("base_network, smallest", [("vgg-16", 268), ("resnet-50", 257)])
def test_too_small_image_shape_is_refused_with_the_minimum(base_network, smallest):
    assert minimum_image_shape(base_network) == smallest
    with pytest.raises(ConfigError, match=rf"'image_shape'=200 is too small for base_network={base_network}.*>= {smallest}"):
        build_ssd(base_network, 2, 200)
    build_ssd(base_network, 2, smallest)  # the minimum itself works


def test_decode_boxes_is_torchvisions_box_coder_broadcast_over_the_batch():
    from torchvision.models.detection._utils import BoxCoder

    from sagedet.model.ssd import BOX_CODER_WEIGHTS, decode_boxes
    anchors = build_ssd("mobilenet-v3", 3, 64).anchors
    codes = 3 * torch.randn(2, anchors.shape[0], 4, generator=torch.Generator().manual_seed(0))
    codes[0, 0, 2:] = 50.0  # beyond the log-size clamp
    expected = BoxCoder(BOX_CODER_WEIGHTS).decode_single(codes.reshape(-1, 4), anchors.repeat(2, 1)).view(2, -1, 4)
    torch.testing.assert_close(decode_boxes(codes, anchors), expected)


def test_uint8_images_are_refused_not_normalized_as_0_to_255():
    model = build_ssd("mobilenet-v3", 2, 128).eval()
    with pytest.raises(TypeError, match=r"float images in \[0, 1\], not torch.uint8: scale them first"):
        model(torch.zeros(1, 3, 128, 128, dtype=torch.uint8))
