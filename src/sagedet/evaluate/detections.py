"""The input every evaluation metric takes: one image's predictions beside its ground truth."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ImageDetections:
    """Predictions and ground truth of one image.

    Boxes are xmin, ymin, xmax, ymax normalized to [0, 1] by the image's width and height. Arrays
    are converted on construction: boxes to float64 (N, 4) (an empty array of any shape becomes
    (0, 4)), scores to float64 (N,), labels to int64 (N,). ``width`` and ``height`` are the
    original size in pixels; only COCO's area ranges depend on them.
    """

    pred_boxes: np.ndarray
    pred_scores: np.ndarray
    pred_labels: np.ndarray
    gt_boxes: np.ndarray
    gt_labels: np.ndarray
    width: int = 1
    height: int = 1

    def __post_init__(self) -> None:
        for name, dtype in (("pred_scores", float), ("pred_labels", int), ("gt_labels", int)):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=dtype).reshape(-1))
        for name, labels in (("pred_boxes", self.pred_labels), ("gt_boxes", self.gt_labels)):
            boxes = np.asarray(getattr(self, name), dtype=np.float64)
            if boxes.size == 0:
                boxes = boxes.reshape(0, 4)
            if boxes.shape != (len(labels), 4):
                raise ValueError(f"{name} has shape {boxes.shape}, expected ({len(labels)}, 4)")
            object.__setattr__(self, name, boxes)
        if len(self.pred_scores) != len(self.pred_labels):
            raise ValueError(f"{len(self.pred_scores)} scores for {len(self.pred_labels)} labels")
        if self.width < 1 or self.height < 1:
            raise ValueError(f"image size must be positive, got {self.width}x{self.height}")
