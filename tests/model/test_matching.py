"""Batched default-box matching against a per-image reference written with plain loops."""

import torch

from sagedet.model.matching import batched_box_iou, gather_targets, match_anchors


def _random_boxes(generator, count):
    xy = torch.rand(count, 2, generator=generator) * 0.7
    wh = torch.rand(count, 2, generator=generator) * 0.3 + 0.02
    return torch.cat([xy, xy + wh], dim=1)


def _iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def _reference_match(anchors, boxes, threshold):
    """SSD's rule for one image, anchor by anchor."""
    anchors, boxes = anchors.tolist(), boxes.tolist()
    matched = []
    for anchor in anchors:
        ious = [_iou(box, anchor) for box in boxes]
        best = max(range(len(boxes)), key=lambda i: ious[i]) if boxes else None
        matched.append(best if best is not None and ious[best] >= threshold else -1)
    for index, box in enumerate(boxes):
        ious = [_iou(box, anchor) for anchor in anchors]
        matched[max(range(len(anchors)), key=lambda a: ious[a])] = index
    return matched


def test_batched_iou_matches_pairwise_iou():
    generator = torch.Generator().manual_seed(1)
    boxes = _random_boxes(generator, 6).view(2, 3, 4)
    anchors = _random_boxes(generator, 5)
    iou = batched_box_iou(boxes, anchors)
    assert iou.shape == (2, 3, 5)
    for b in range(2):
        for m in range(3):
            for a in range(5):
                assert abs(iou[b, m, a].item() - _iou(boxes[b, m].tolist(), anchors[a].tolist())) < 1e-6


def test_batched_matching_equals_per_image_reference_with_padding():
    generator = torch.Generator().manual_seed(7)
    anchors = _random_boxes(generator, 300)
    counts = [3, 0, 5, 1]
    max_objects = max(counts)
    boxes = torch.zeros(len(counts), max_objects, 4)
    labels = torch.full((len(counts), max_objects), -1)
    for b, count in enumerate(counts):
        boxes[b, :count] = _random_boxes(generator, count)
        labels[b, :count] = torch.randint(0, 4, (count,), generator=generator)
    matched = match_anchors(anchors, boxes, labels, 0.5)
    assert matched.shape == (4, 300)
    for b, count in enumerate(counts):
        assert matched[b].tolist() == _reference_match(anchors, boxes[b, :count], 0.5)
    assert (matched[1] == -1).all()  # an image without objects is all background


def test_every_object_gets_an_anchor_even_below_threshold():
    anchors = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]])
    boxes = torch.tensor([[[0.0, 0.0, 0.1, 0.1]]])  # IoU 0.04 with the first anchor
    matched = match_anchors(anchors, boxes, torch.tensor([[2]]), 0.5)
    assert matched.tolist() == [[0, -1]]
    target_boxes, target_labels = gather_targets(matched, boxes, torch.tensor([[2]]))
    assert target_labels.tolist() == [[3, 0]]  # class 2 + 1 (0 is background)
    assert torch.equal(target_boxes[0, 0], boxes[0, 0])


def test_boxes_sharing_their_best_anchor_leave_it_to_the_later_box():
    """As the reference (and SSD's per-image loop) does, on every device: scatter_ left the winner
    unspecified on CUDA; three boxes whose best anchor is the same all claim it, the last one keeps it."""
    anchors = torch.tensor([[0.0, 0.0, 0.2, 0.2], [0.4, 0.4, 0.6, 0.6], [0.8, 0.8, 1.0, 1.0]])
    boxes = torch.tensor([[[0.35, 0.35, 0.6, 0.6], [0.4, 0.4, 0.65, 0.65], [0.38, 0.38, 0.62, 0.62], [0, 0, 0, 0]]])
    labels = torch.tensor([[0, 1, 2, -1]])
    matched = match_anchors(anchors, boxes, labels, iou_threshold=0.99)
    assert matched.tolist() == [[-1, 2, -1]] == [_reference_match(anchors, boxes[0, :3], 0.99)]
