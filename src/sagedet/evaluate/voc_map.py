"""``validation:mAP``: Pascal VOC mean average precision, as the built-in algorithm reports it.

Per class, every detection of every image is ranked by score, highest first. Within its image a
detection is compared with the ground-truth boxes of its class; following the VOC devkit (and
MXNet's ``MApMetric``), it takes the box it overlaps most. It is a true positive when that IoU is at
least the threshold and the box was not taken by a higher-scored detection; otherwise, including a
second detection of an already-matched box, it is a false positive. AP is the area under the
precision envelope (precision made monotone non-increasing in recall), summed at every recall step
(VOC2010+ "all points", not the 11-point VOC2007 rule). IoU is computed on normalized corners
without VOC's +1 pixel convention. The mean is taken over the classes in ``range(num_classes)``
that have at least one ground-truth box; labels outside that range are ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sagedet.evaluate.detections import ImageDetections


@dataclass(frozen=True)
class VocResult:
    """mean_ap is NaN when no class has ground truth; per_class_ap holds only classes with some."""

    mean_ap: float
    per_class_ap: dict[int, float]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (N, 4) with every box in ``b`` (M, 4), xyxy; shape (N, M)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(axis=1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def voc_map(images: Sequence[ImageDetections], num_classes: int, iou_threshold: float) -> VocResult:
    """Per-class AP at IoU >= ``iou_threshold`` and their mean (rules: module docstring)."""
    scores, labels, hits = [np.zeros(0)], [np.zeros(0, dtype=int)], [np.zeros(0, dtype=bool)]
    gt_count = np.zeros(num_classes, dtype=np.int64)
    for image in images:
        order = np.argsort(-image.pred_scores, kind="stable")
        iou = box_iou(image.pred_boxes[order], image.gt_boxes)
        iou[image.pred_labels[order, None] != image.gt_labels[None, :]] = -1.0  # other classes
        scores.append(image.pred_scores[order])
        labels.append(image.pred_labels[order])
        hits.append(_true_positives(iou, iou_threshold))
        known = image.gt_labels[(image.gt_labels >= 0) & (image.gt_labels < num_classes)]
        gt_count += np.bincount(known, minlength=num_classes)
    all_scores, all_labels, all_hits = map(np.concatenate, (scores, labels, hits))
    per_class = {
        c: _average_precision(all_scores[all_labels == c], all_hits[all_labels == c], int(n))
        for c, n in enumerate(gt_count)
        if n > 0
    }
    mean = float(np.mean(list(per_class.values()))) if per_class else float("nan")
    return VocResult(mean_ap=mean, per_class_ap=per_class)


def _true_positives(iou: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Which detections (rows of ``iou``, best score first) are true positives in their image.

    ``iou`` holds -1 where detection and box differ in class, so those are never taken.
    """
    tp = np.zeros(iou.shape[0], dtype=bool)
    if iou.shape[1] == 0:
        return tp
    best = iou.argmax(axis=1)
    candidates = np.flatnonzero(iou[np.arange(len(best)), best] >= iou_threshold)
    _, first = np.unique(best[candidates], return_index=True)  # the best-scored claim on each box
    tp[candidates[first]] = True
    return tp


def _average_precision(scores: np.ndarray, hits: np.ndarray, gt_count: int) -> float:
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(hits[order])
    recall = np.concatenate([[0.0], tp / gt_count, [1.0]])
    precision = np.concatenate([[0.0], tp / np.arange(1, len(tp) + 1), [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.flatnonzero(recall[1:] != recall[:-1])
    return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))
