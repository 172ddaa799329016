"""Default-box matching and target encoding for a whole batch at once, on the batch's device.

Ground truth arrives padded: boxes (B, M, 4) normalized xyxy, labels (B, M) with -1 for padding.
There is no per-image Python loop, so the work stays on the GPU and needs no host synchronisation.
"""

from __future__ import annotations

import torch
from torch import Tensor


def batched_box_iou(boxes: Tensor, anchors: Tensor) -> Tensor:
    """IoU of (B, M, 4) boxes with (A, 4) anchors, both xyxy: (B, M, A)."""
    area_boxes = (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(min=0)
    area_anchors = (anchors[:, 2] - anchors[:, 0]) * (anchors[:, 3] - anchors[:, 1])
    top_left = torch.maximum(boxes[..., None, :2], anchors[None, None, :, :2])
    bottom_right = torch.minimum(boxes[..., None, 2:], anchors[None, None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_boxes[..., None] + area_anchors[None, None, :] - inter
    return inter / union.clamp(min=1e-12)


def match_anchors(anchors: Tensor, gt_boxes: Tensor, gt_labels: Tensor, iou_threshold: float = 0.5) -> Tensor:
    """The index of the ground-truth box each anchor is matched to, or -1 for background: (B, A).

    SSD's rule: an anchor matches the box it overlaps most if that IoU ≥ ``iou_threshold``; and every
    box is matched to the anchor that overlaps it most, whatever the IoU, so no object goes unlearned.
    """
    batch, max_objects = gt_labels.shape
    num_anchors = anchors.shape[0]
    valid = gt_labels >= 0
    iou = batched_box_iou(gt_boxes, anchors).masked_fill(~valid[..., None], -1.0)
    best_iou, best_box = iou.max(dim=1)
    matched = torch.where(best_iou >= iou_threshold, best_box, torch.full_like(best_box, -1))
    # Each real box claims its best anchor; padded boxes write into a spare column that is dropped.
    best_anchor = iou.argmax(dim=2)
    target_column = torch.where(valid, best_anchor, torch.full_like(best_anchor, num_anchors))
    box_index = torch.arange(max_objects, device=gt_labels.device).expand(batch, max_objects)
    extended = torch.cat([matched, matched.new_full((batch, 1), -1)], dim=1)
    # Two boxes with the same best anchor: the later box takes it. scatter_ would leave the winner
    # unspecified on CUDA (the CPU keeps the last); amax picks the same one on every device.
    extended.scatter_reduce_(1, target_column, box_index, reduce="amax", include_self=False)
    return extended[:, :num_anchors]


def gather_targets(matched: Tensor, gt_boxes: Tensor, gt_labels: Tensor) -> tuple[Tensor, Tensor]:
    """Per-anchor target boxes (B, A, 4) and classes (B, A), class 0 being background."""
    index = matched.clamp(min=0)
    boxes = torch.gather(gt_boxes, 1, index[..., None].expand(-1, -1, 4))
    labels = torch.gather(gt_labels, 1, index) + 1
    labels = torch.where(matched >= 0, labels, torch.zeros_like(labels))
    return boxes, labels
