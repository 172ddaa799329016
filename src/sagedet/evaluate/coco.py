"""COCO box AP, computed by pycocotools itself on in-memory datasets.

Boxes are scaled to pixels by each image's width and height so that COCO's area ranges mean what
they mean on COCO; only the "all" range enters the three numbers returned. pycocotools keeps the 100
best-scored detections per image, interpolates precision at 101 recall points and averages over
categories that have ground truth. Where pycocotools has nothing to average it reports -1; that is
returned as NaN, so with no ground truth at all (or no images) every value is NaN.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from sagedet.evaluate.detections import ImageDetections

KEYS = ("coco_AP", "coco_AP50", "coco_AP75")  # COCOeval.stats[0:3]: AP@[.5:.95], AP@.5, AP@.75


def coco_metrics(images: Sequence[ImageDetections], num_classes: int) -> dict[str, float]:
    """AP@[.5:.95], AP@.5 and AP@.75 of ``images`` over classes ``range(num_classes)``.

    pycocotools prints as it goes; its output is swallowed by swapping ``sys.stdout`` for the
    duration, so no other thread should print metric lines meanwhile.
    """
    entries, gt, dt = [], [], []
    for image_id, image in enumerate(images, start=1):
        entries.append({"id": image_id, "width": image.width, "height": image.height})
        gt += _annotations(image_id, image, image.gt_boxes, image.gt_labels)
        dt += _annotations(image_id, image, image.pred_boxes, image.pred_labels, image.pred_scores)
    categories = [{"id": c + 1} for c in range(num_classes)]
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt, coco_dt = _coco(entries, categories, gt), _coco(entries, categories, dt)
        evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {key: float(v) if v >= 0 else float("nan") for key, v in zip(KEYS, evaluator.stats[:3])}


def _annotations(
    image_id: int,
    image: ImageDetections,
    boxes: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray | None = None,
) -> list[dict]:
    """COCO annotation dicts (category id = label + 1, pixel xywh); ids are set by :func:`_coco`."""
    xyxy = boxes * np.array([image.width, image.height, image.width, image.height], dtype=float)
    xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)
    anns = []
    for k, (x, y, w, h) in enumerate(xywh.tolist()):
        ann = {"image_id": image_id, "category_id": int(labels[k]) + 1, "iscrowd": 0,
               "bbox": [x, y, w, h], "area": w * h}
        if scores is not None:
            ann["score"] = float(scores[k])
        anns.append(ann)
    return anns


def _coco(images: list[dict], categories: list[dict], annotations: list[dict]) -> COCO:
    # Annotation ids start at 1: COCOeval records matches by gt id and treats id 0 as "unmatched".
    for ann_id, ann in enumerate(annotations, start=1):
        ann["id"] = ann_id
    coco = COCO()
    coco.dataset = {"images": images, "categories": categories, "annotations": annotations}
    coco.createIndex()
    return coco
