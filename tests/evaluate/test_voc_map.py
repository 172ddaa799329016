import math

import numpy as np
import pytest

from detections_factory import image
from sagedet.evaluate.voc_map import box_iou, voc_map


A = [0.1, 0.1, 0.4, 0.4]
B = [0.6, 0.6, 0.9, 0.9]
ELSEWHERE = [0.5, 0.0, 0.6, 0.1]


def test_perfect_detections_score_one():
    images = [image([(A, 0.9, 0), (B, 0.8, 1)], [(A, 0), (B, 1)]), image([(B, 0.7, 0)], [(B, 0)])]
    result = voc_map(images, num_classes=2, iou_threshold=0.5)
    assert result.per_class_ap == {0: 1.0, 1: 1.0}
    assert result.mean_ap == 1.0


def test_false_positive_ranked_above_true_positive_halves_precision():
    result = voc_map([image([(ELSEWHERE, 0.9, 0), (A, 0.8, 0)], [(A, 0)])], 1, 0.5)
    assert result.mean_ap == pytest.approx(0.5)  # the only recall step has precision 1/2


def test_false_positive_ranked_below_every_true_positive_costs_nothing():
    result = voc_map([image([(A, 0.9, 0), (ELSEWHERE, 0.1, 0)], [(A, 0)])], 1, 0.5)
    assert result.mean_ap == 1.0


def test_duplicate_detection_is_a_false_positive():
    # ranks: A (tp, r=1/2 p=1), A again (fp, r=1/2 p=1/2), B (tp, r=1 p=2/3)
    result = voc_map([image([(A, 0.9, 0), (A, 0.8, 0), (B, 0.7, 0)], [(A, 0), (B, 0)])], 1, 0.5)
    assert result.mean_ap == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)


def test_detection_whose_best_box_is_taken_is_false_positive_even_if_another_box_qualifies():
    # VOC devkit / MXNet MApMetric rule: the second detection overlaps box 1 most (IoU .63, taken)
    # and box 2 enough (IoU .57, free), yet it is not moved to box 2.
    box1, box2, second = [0.0, 0.0, 0.4, 1.0], [0.2, 0.0, 0.6, 1.0], [0.09, 0.0, 0.49, 1.0]
    iou = box_iou(np.array([second]), np.array([box1, box2]))[0]
    assert iou[0] > iou[1] >= 0.5
    result = voc_map([image([(box1, 0.9, 0), (second, 0.8, 0)], [(box1, 0), (box2, 0)])], 1, 0.5)
    assert result.mean_ap == pytest.approx(0.5)


def test_wrong_class_is_a_miss_and_a_false_positive():
    result = voc_map([image([(A, 0.9, 1)], [(A, 0)])], num_classes=2, iou_threshold=0.5)
    assert result.per_class_ap == {0: 0.0}  # class 1 has no ground truth: left out
    assert result.mean_ap == 0.0


@pytest.mark.parametrize(("width", "hit"), [(0.2499, False), (0.2501, True)])
def test_iou_just_below_and_just_above_the_threshold(width, hit):
    gt, pred = [0.0, 0.0, 0.5, 1.0], [0.0, 0.0, width, 1.0]  # IoU = 2 * width
    assert box_iou(np.array([pred]), np.array([gt]))[0, 0] == pytest.approx(2 * width)
    assert voc_map([image([(pred, 0.9, 0)], [(gt, 0)])], 1, 0.5).mean_ap == (1.0 if hit else 0.0)


def test_classes_without_ground_truth_are_omitted_from_the_mean():
    images = [image([(A, 0.9, 0), (B, 0.8, 1), (ELSEWHERE, 0.7, 2)], [(A, 0), (B, 2)])]
    result = voc_map(images, num_classes=4, iou_threshold=0.5)
    assert result.per_class_ap == {0: 1.0, 2: 0.0}
    assert result.mean_ap == 0.5


def test_ranking_is_global_across_images():
    # image 1's FP (0.9) outranks image 2's TP (0.8): r=1/2 p=1, then fp, then r=1 p=2/3
    images = [image([(A, 0.95, 0), (ELSEWHERE, 0.9, 0)], [(A, 0)]), image([(B, 0.8, 0)], [(B, 0)])]
    assert voc_map(images, 1, 0.5).mean_ap == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_images_without_predictions_or_ground_truth():
    images = [image([], [(A, 0)]), image([], []), image([(A, 0.9, 0)], [(A, 0)])]
    assert voc_map(images, 1, 0.5).mean_ap == pytest.approx(0.5)
    empty = voc_map([image([(A, 0.9, 0)], [])], 1, 0.5)
    assert math.isnan(empty.mean_ap) and empty.per_class_ap == {}


def test_labels_outside_the_class_range_are_ignored():
    result = voc_map([image([(A, 0.9, 0), (B, 0.99, 5)], [(A, 0), (B, 5)])], 1, 0.5)
    assert result.per_class_ap == {0: 1.0}


# --- an independent reference: plain Python, explicit precision/recall lists -------------------


def reference_iou(a, b):
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def reference_voc_map(images, num_classes, threshold):
    per_class = {}
    for c in range(num_classes):
        gts = [
            [box for box, label in zip(im.gt_boxes.tolist(), im.gt_labels.tolist()) if label == c]
            for im in images
        ]
        total = sum(len(g) for g in gts)
        if total == 0:
            continue
        dets = [
            (score, i, box)
            for i, im in enumerate(images)
            for box, score, label in zip(
                im.pred_boxes.tolist(), im.pred_scores.tolist(), im.pred_labels.tolist()
            )
            if label == c
        ]
        dets.sort(key=lambda d: -d[0])
        taken = [[False] * len(g) for g in gts]
        tp = fp = 0
        precisions, recalls = [], []
        for _, i, box in dets:
            best, best_j = 0.0, None
            for j, g in enumerate(gts[i]):
                o = reference_iou(box, g)
                if best_j is None or o > best:
                    best, best_j = o, j
            if best_j is not None and best >= threshold and not taken[i][best_j]:
                taken[i][best_j] = True
                tp += 1
            else:
                fp += 1
            precisions.append(tp / (tp + fp))
            recalls.append(tp / total)
        ap, previous = 0.0, 0.0
        for r in recalls:
            if r > previous:
                envelope = max(p for p, q in zip(precisions, recalls) if q >= r)
                ap += (r - previous) * envelope
                previous = r
        per_class[c] = ap
    return per_class


def random_box(rng):
    x, y = rng.uniform(0, 0.8, 2)
    w, h = rng.uniform(0.05, 0.4, 2)
    return [x, y, min(x + w, 1.0), min(y + h, 1.0)]


def random_images(rng, num_classes):
    images = []
    for _ in range(rng.integers(1, 9)):
        gts = [(random_box(rng), int(rng.integers(num_classes))) for _ in range(rng.integers(0, 7))]
        preds = []
        for box, label in gts:
            for _ in range(rng.choice([0, 1, 1, 1, 2])):  # missed, found, found twice
                jittered = np.clip(np.array(box) + rng.normal(0, 0.04, 4), 0, 1).tolist()
                wrong = rng.random() < 0.1
                guess = int(rng.integers(num_classes)) if wrong else label
                preds.append((jittered, rng.random(), guess))
        for _ in range(rng.integers(0, 4)):  # false positives anywhere
            preds.append((random_box(rng), rng.random(), int(rng.integers(num_classes))))
        images.append(image(preds, gts))
    return images


@pytest.mark.parametrize("seed", range(50))
def test_matches_independent_reference_on_random_detections(seed):
    rng = np.random.default_rng(seed)
    num_classes = int(rng.integers(1, 5))
    images = random_images(rng, num_classes)
    for threshold in (0.3, 0.5, 0.7):
        expected = reference_voc_map(images, num_classes, threshold)
        result = voc_map(images, num_classes, threshold)
        assert result.per_class_ap.keys() == expected.keys()
        for c, ap in expected.items():
            assert result.per_class_ap[c] == pytest.approx(ap, abs=1e-9)
        if expected:
            assert result.mean_ap == pytest.approx(sum(expected.values()) / len(expected), abs=1e-9)
        else:
            assert math.isnan(result.mean_ap)


def test_random_sets_are_not_trivial():
    """The reference comparison above sees partial APs, not only 0 and 1."""
    aps = []
    for seed in range(50):
        rng = np.random.default_rng(seed)
        num_classes = int(rng.integers(1, 5))
        aps += voc_map(random_images(rng, num_classes), num_classes, 0.5).per_class_ap.values()
    partial = [ap for ap in aps if 0.05 < ap < 0.95]
    assert len(partial) > len(aps) / 3
