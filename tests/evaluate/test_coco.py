import math

import numpy as np
import pytest

from sagedet.evaluate.coco import coco_metrics
from detections_factory import image
from sagedet.evaluate.voc_map import voc_map


A = [0.1, 0.1, 0.4, 0.4]
B = [0.6, 0.6, 0.9, 0.9]


def test_perfect_detections_score_one():
    images = [
        image([(A, 0.9, 0), (B, 0.8, 1)], [(A, 0), (B, 1)]),
        image([(A, 0.5, 1)], [(A, 1)], width=300, height=300),
    ]
    expected = {"coco_AP": 1.0, "coco_AP50": 1.0, "coco_AP75": 1.0}
    assert coco_metrics(images, num_classes=2) == pytest.approx(expected)


def test_iou_between_thresholds():
    # IoU 0.62 passes the thresholds .50, .55, .60 of the ten in [.5:.95]
    gt, pred = [0.0, 0.0, 0.5, 1.0], [0.0, 0.0, 0.31, 1.0]
    result = coco_metrics([image([(pred, 0.9, 0)], [(gt, 0)])], 1)
    assert result == pytest.approx({"coco_AP": 0.3, "coco_AP50": 1.0, "coco_AP75": 0.0})


def test_image_without_predictions_counts_its_missed_objects():
    images = [image([(A, 0.9, 0)], [(A, 0)]), image([], [(B, 0)])]
    result = coco_metrics(images, 1)
    assert result["coco_AP50"] == pytest.approx(51 / 101)  # precision 1 at recall thresholds 0..0.5


def test_no_ground_truth_gives_nan():
    for images in ([image([(A, 0.9, 0)], [])], [image()], []):
        assert all(math.isnan(v) for v in coco_metrics(images, 2).values())


def test_prints_nothing(capsys):
    coco_metrics([image([(A, 0.9, 0)], [(A, 0)])], 1)
    assert capsys.readouterr().out == ""


def separated_images(rng, num_classes):
    """Objects in distinct cells of a 3x3 grid, so no detection overlaps two objects."""
    images = []
    for _ in range(rng.integers(1, 8)):
        cells = rng.permutation(9)[: rng.integers(1, 8)]
        gts, preds = [], []
        for k, cell in enumerate(cells):
            x, y = (cell % 3) / 3 + 0.03, (cell // 3) / 3 + 0.03
            box = [x, y, x + rng.uniform(0.1, 0.27), y + rng.uniform(0.1, 0.27)]
            label = int(rng.integers(num_classes))
            if k < len(cells) - 1:  # the last cell holds a false positive only
                gts.append((box, label))
            for _ in range(rng.choice([0, 1, 1, 2])):
                jittered = (np.array(box) + rng.normal(0, 0.025, 4)).tolist()
                guess = label if rng.random() > 0.1 else int(rng.integers(num_classes))
                preds.append((jittered, rng.random(), guess))
        width, height = rng.integers(200, 800, 2).tolist()
        images.append(image(preds, gts, width=width, height=height))
    return images


@pytest.mark.parametrize("seed", range(20))
def test_ap50_agrees_with_voc_map_on_separated_objects(seed):
    """pycocotools samples the precision envelope at 101 recall points (0, .01, ..., 1) where
    voc_map integrates it exactly; for a non-increasing envelope the two differ by at most 1/101.
    The matching rules agree when no detection overlaps two objects."""
    rng = np.random.default_rng(seed)
    num_classes = int(rng.integers(1, 4))
    images = separated_images(rng, num_classes)
    voc = voc_map(images, num_classes, iou_threshold=0.5).mean_ap
    coco = coco_metrics(images, num_classes)["coco_AP50"]
    assert 0.0 < voc < 1.0  # a partial score, where the interpolations can differ
    assert coco == pytest.approx(voc, abs=1 / 101 + 1e-9)
