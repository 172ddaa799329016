"""The SSD detector: a base network, torchvision's SSD heads and default boxes, a batched loss.

Coordinates are normalized xyxy in [0, 1] everywhere — default boxes, targets and detections — so a
detection maps back to the original image by its width and height alone (the built-in's response
format). Class 0 of the heads is background; a detection's label is the user's class_id.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.ssd import SSDHead
from torchvision.models.detection.ssdlite import SSDLiteHead
from torchvision.ops import batched_nms

from ..errors import ConfigError
from .backbones import BaseNetwork, build_base_network
from .matching import gather_targets, match_anchors

BOX_CODER_WEIGHTS = (10.0, 10.0, 5.0, 5.0)


@dataclass
class Detections:
    """One image's detections: boxes (K, 4) normalized xyxy, scores (K,), labels (K,) class ids."""

    boxes: Tensor
    scores: Tensor
    labels: Tensor


def _default_box_generator(head: str, num_maps: int) -> DefaultBoxGenerator:
    if head == "ssdlite":  # torchvision's ssdlite320_mobilenet_v3_large
        return DefaultBoxGenerator([[2, 3]] * num_maps, min_ratio=0.2, max_ratio=0.95)
    if num_maps == 6:  # SSD300 (torchvision's ssd300_vgg16, NVIDIA's SSD300 ResNet-50)
        return DefaultBoxGenerator([[2], [2, 3], [2, 3], [2, 3], [2], [2]],
                                   scales=[0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05])
    if num_maps == 7:  # SSD512 (SSD paper, table 4)
        return DefaultBoxGenerator([[2], [2, 3], [2, 3], [2, 3], [2, 3], [2], [2]],
                                   scales=[0.04, 0.1, 0.26, 0.42, 0.58, 0.74, 0.9, 1.06])
    raise ValueError(f"no default-box layout for {num_maps} feature maps")


def _feature_shapes(features: nn.Module, image_shape: int) -> list[tuple[int, int, int]] | None:
    """(channels, height, width) of each feature map, found on the meta device (no compute), or None
    if the image is too small for the network."""
    probe = torch.empty(1, 3, image_shape, image_shape, device="meta")
    try:
        with torch.no_grad():
            maps = copy.deepcopy(features).to("meta").eval()(probe)
    except (RuntimeError, ValueError):
        return None
    shapes = [(m.shape[1], m.shape[2], m.shape[3]) for m in maps]
    return shapes if all(h > 0 and w > 0 for _, h, w in shapes) else None


class SSDDetector(nn.Module):
    """SSD with injected parts: ``base.features`` → ``head`` → default boxes, loss and decoding."""

    def __init__(self, base: BaseNetwork, num_classes: int, image_shape: int, map_shapes: list[tuple[int, int, int]],
                 neg_to_pos_ratio: int = 3, match_iou: float = 0.5):
        super().__init__()
        self.num_classes = num_classes
        self.image_shape = image_shape
        self.features = base.features
        self.base_layers = base.layers  # a plain dict: the modules are registered through `features`
        self.cpu_channels_last = base.cpu_channels_last
        self.neg_to_pos_ratio = neg_to_pos_ratio
        self.match_iou = match_iou
        generator = _default_box_generator(base.head, len(map_shapes))
        channels = [c for c, _, _ in map_shapes]
        anchors_per_cell = generator.num_anchors_per_location()
        if base.head == "ssdlite":
            norm = nn.BatchNorm2d
            self.head = SSDLiteHead(channels, anchors_per_cell, num_classes + 1, norm)
        else:
            self.head = SSDHead(channels, anchors_per_cell, num_classes + 1)
        self.register_buffer("anchors", self._anchors(generator, map_shapes, image_shape), persistent=False)
        self.register_buffer("image_mean", torch.tensor(base.image_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(base.image_std).view(1, 3, 1, 1), persistent=False)
        # torchvision's BoxCoder.encode_single builds its weights from a tuple on every call: on CUDA a blocking
        # host-to-device copy inside each training step. A buffer moves with the model once.
        self.register_buffer("box_weights", torch.tensor(BOX_CODER_WEIGHTS), persistent=False)
        self._frozen_norms: list[nn.Module] = []

    @staticmethod
    def _anchors(generator: DefaultBoxGenerator, map_shapes: list[tuple[int, int, int]], image_shape: int) -> Tensor:
        maps = [torch.empty(1, 1, h, w) for _, h, w in map_shapes]
        images = ImageList(torch.empty(1, 3, image_shape, image_shape), [(image_shape, image_shape)])
        return generator(images, maps)[0] / image_shape

    # --- forward -----------------------------------------------------------------------------
    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """images (B, 3, S, S) in [0, 1] → class logits (B, A, num_classes + 1), box codes (B, A, 4)."""
        if not images.is_floating_point():  # uint8 pixels would pass the normalization as 0-255: wrong, silently
            raise TypeError(f"the model takes float images in [0, 1], not {images.dtype}: scale them first "
                            "(sagedet.data.transforms.scale_pixels)")
        x = (images - self.image_mean) / self.image_std
        out = self.head(self.features(x))
        return out["cls_logits"], out["bbox_regression"]

    # --- training ------------------------------------------------------------------------------
    def loss(self, cls_logits: Tensor, box_codes: Tensor, gt_boxes: Tensor, gt_labels: Tensor) -> dict[str, Tensor]:
        """SSD's loss for the whole batch: cross entropy with 3:1 hard negative mining, smooth L1 on
        the matched boxes, both divided by the number of matched default boxes."""
        anchors = self.anchors.to(gt_boxes.dtype)
        matched = match_anchors(anchors, gt_boxes, gt_labels, self.match_iou)
        target_boxes, target_labels = gather_targets(matched, gt_boxes, gt_labels)
        batch, num_anchors = matched.shape
        positive = matched >= 0
        num_positive = positive.sum(dim=1, keepdim=True)
        normalizer = num_positive.sum().clamp(min=1).to(torch.float32)

        # Background anchors get themselves as target: padded boxes would encode to -inf.
        target_boxes = torch.where(positive[..., None], target_boxes, anchors)
        target_codes = det_utils.encode_boxes(target_boxes.reshape(-1, 4), anchors.repeat(batch, 1),
                                              self.box_weights.to(anchors.dtype)).view(batch, num_anchors, 4)
        box_loss = F.smooth_l1_loss(box_codes.float(), target_codes, reduction="none").sum(-1)
        smooth_l1 = (box_loss * positive).sum() / normalizer

        ce = F.cross_entropy(cls_logits.float().reshape(-1, self.num_classes + 1), target_labels.reshape(-1),
                             reduction="none").view(batch, num_anchors)
        negative_loss = ce.masked_fill(positive, -float("inf"))
        order = negative_loss.argsort(dim=1, descending=True)
        rank = order.argsort(dim=1)
        hard_negative = rank < self.neg_to_pos_ratio * num_positive
        cross_entropy = ((ce * positive).sum() + (ce * hard_negative).sum()) / normalizer
        return {"cross_entropy": cross_entropy, "smooth_l1": smooth_l1}

    def freeze(self, pattern: str | None) -> list[str]:
        """Freeze the base-network layers whose names ``re.match`` the pattern; return their names."""
        if pattern is None:
            return []
        regex = re.compile(pattern)
        names = [name for name in self.base_layers if regex.match(name)]
        if not names:
            listed = ", ".join(self.base_layers)
            raise ConfigError(
                f"hyperparameter 'freeze_layer_pattern'={pattern!r} matches none of the base network's layers; "
                f"the pattern is matched (re.match) against: {listed}")
        self._frozen_norms = []
        for name in names:
            module = self.base_layers[name]
            for parameter in module.parameters(recurse=False):
                parameter.requires_grad_(False)
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                self._frozen_norms.append(module)
        return names

    def synchronize_batch_norm(self) -> SSDDetector:
        """Batch normalization synchronized across training processes (``torch.nn.SyncBatchNorm``, CUDA).
        The conversion makes new modules: the base layers' table and the frozen layers are pointed at
        them, so that a frozen batch norm keeps its running statistics under SyncBatchNorm too."""
        paths = {id(module): path for path, module in self.named_modules()}
        layers = {name: paths[id(module)] for name, module in self.base_layers.items()}
        frozen = [paths[id(norm)] for norm in self._frozen_norms]
        nn.SyncBatchNorm.convert_sync_batchnorm(self)  # replaces the children in place (self is no norm)
        self.base_layers = {name: self.get_submodule(path) for name, path in layers.items()}
        self._frozen_norms = [self.get_submodule(path) for path in frozen]
        return self

    def train(self, mode: bool = True) -> SSDDetector:
        super().train(mode)
        for norm in self._frozen_norms:  # a frozen layer keeps its running statistics too
            norm.eval()
        return self

    # --- inference -----------------------------------------------------------------------------
    def decode(self, cls_logits: Tensor, box_codes: Tensor) -> tuple[Tensor, Tensor]:
        """Head outputs → class scores (B, A, num_classes) without background, softmaxed in float32,
        and boxes (B, A, 4) normalized xyxy clipped to [0, 1]. Pure tensor code with no Python
        branch on values, so it traces into TorchScript and ONNX for any batch size."""
        scores = F.softmax(cls_logits.float(), dim=-1)[..., 1:]
        return scores, decode_boxes(box_codes.float(), self.anchors).clamp(0.0, 1.0)

    def postprocess(self, cls_logits: Tensor, box_codes: Tensor, nms_threshold: float, score_threshold: float = 0.01,
                    candidates: int = 1000, max_detections: int = 200) -> list[Detections]:
        """Softmax scores, decoded boxes, then per-class NMS for each image, best first."""
        with torch.no_grad():
            scores, boxes = self.decode(cls_logits, box_codes)
        return select_detections(scores, boxes, nms_threshold, score_threshold, candidates, max_detections)

    @torch.no_grad()
    def detect(self, images: Tensor, nms_threshold: float, **kwargs) -> list[Detections]:
        cls_logits, box_codes = self(images)
        return self.postprocess(cls_logits, box_codes, nms_threshold, **kwargs)


def decode_boxes(box_codes: Tensor, anchors: Tensor, weights: tuple[float, ...] = BOX_CODER_WEIGHTS) -> Tensor:
    """SSD box codes (B, A, 4) against anchors (A, 4) xyxy → boxes (B, A, 4) xyxy: torchvision's
    ``BoxCoder.decode_single`` (same weights, same clamp of the log sizes), broadcast over the batch
    instead of repeating the anchors, so a traced graph keeps a free batch size."""
    wx, wy, ww, wh = weights
    widths = anchors[:, 2] - anchors[:, 0]
    heights = anchors[:, 3] - anchors[:, 1]
    center_x = anchors[:, 0] + 0.5 * widths
    center_y = anchors[:, 1] + 0.5 * heights
    clamp = math.log(1000.0 / 16)
    dx, dy = box_codes[..., 0] / wx, box_codes[..., 1] / wy
    dw = (box_codes[..., 2] / ww).clamp(max=clamp)
    dh = (box_codes[..., 3] / wh).clamp(max=clamp)
    pred_x, pred_y = dx * widths + center_x, dy * heights + center_y
    half_w, half_h = 0.5 * torch.exp(dw) * widths, 0.5 * torch.exp(dh) * heights
    return torch.stack([pred_x - half_w, pred_y - half_h, pred_x + half_w, pred_y + half_h], dim=-1)


@torch.no_grad()
def select_detections(scores: Tensor, boxes: Tensor, nms_threshold: float, score_threshold: float = 0.01,
                      candidates: int = 1000, max_detections: int = 200) -> list[Detections]:
    """Decoded scores (B, A, C) and boxes (B, A, 4) → each image's detections: the ``candidates``
    best (anchor, class) pairs above ``score_threshold``, per-class NMS, the best ``max_detections``."""
    num_classes = scores.shape[-1]
    results = []
    for image_scores, image_boxes in zip(scores, boxes):
        flat = image_scores.flatten()
        top_scores, top_index = flat.topk(min(candidates, flat.numel()))
        keep = top_scores > score_threshold
        top_scores, top_index = top_scores[keep], top_index[keep]
        anchor_index = top_index // num_classes
        labels = top_index % num_classes
        candidate_boxes = image_boxes[anchor_index]
        kept = batched_nms(candidate_boxes, top_scores, labels, nms_threshold)[:max_detections]
        results.append(Detections(candidate_boxes[kept], top_scores[kept], labels[kept]))
    return results


def minimum_image_shape(base_network: str) -> int | None:
    """The smallest square input the network's feature maps allow (searched on the meta device)."""
    base = build_base_network(base_network, 300, None)  # sizes below 512 use the SSD300 layout
    low, high = 16, 512
    if _feature_shapes(base.features, high) is None:
        return None
    while low < high:
        mid = (low + high) // 2
        if _feature_shapes(base.features, mid) is None:
            low = mid + 1
        else:
            high = mid
    return low


def build_ssd(base_network: str, num_classes: int, image_shape: int,
              pretrained: dict[str, Tensor] | None = None) -> SSDDetector:
    """Build the detector; ``pretrained`` is the base network's ImageNet classifier state dict."""
    base = build_base_network(base_network, image_shape, pretrained)
    map_shapes = _feature_shapes(base.features, image_shape)
    if map_shapes is None:
        smallest = minimum_image_shape(base_network)
        raise ConfigError(
            f"hyperparameter 'image_shape'={image_shape} is too small for base_network={base_network}: its "
            f"smallest feature map would be empty; use image_shape >= {smallest}")
    return SSDDetector(base, num_classes, image_shape, map_shapes)
