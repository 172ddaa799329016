"""Builds ImageDetections for the evaluation tests from plain tuples."""

import numpy as np

from sagedet.evaluate.detections import ImageDetections


def image(preds=(), gts=(), width=640, height=480):
    """preds: (box, score, label) triples; gts: (box, label) pairs; boxes normalized xyxy."""
    return ImageDetections(
        pred_boxes=np.array([p[0] for p in preds], dtype=float),
        pred_scores=np.array([p[1] for p in preds], dtype=float),
        pred_labels=np.array([p[2] for p in preds], dtype=int),
        gt_boxes=np.array([g[0] for g in gts], dtype=float),
        gt_labels=np.array([g[1] for g in gts], dtype=int),
        width=width,
        height=height,
    )
