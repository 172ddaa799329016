"""The part of the detector that is exported: images → (scores, boxes), decoding included.

Inputs and outputs of every exported form (TorchScript, ONNX):

- ``images``: float32 (B, 3, S, S), RGB in [0, 1], S the model's ``image_shape``; any B.
- ``scores``: float32 (B, A, C), softmax class probabilities without the background class, so
  column c is the user's class_id c; A default boxes.
- ``boxes``: float32 (B, A, 4), normalized xyxy in [0, 1] of the (squashed) input image.

Non-maximum suppression is not in the graph: :func:`sagedet.model.ssd.select_detections` does it
on these two outputs (torchvision's batched NMS), as the eager model does.

The graph holds its own copy of the model, whose head computes each map's class and box convolutions
as one (:mod:`sagedet.model.fused_head`): the same outputs to fp32 rounding, in less time.
"""

from __future__ import annotations

import copy

from torch import Tensor, nn

from sagedet.model.fused_head import fuse_head
from sagedet.model.ssd import SSDDetector

INPUT_NAMES = ["images"]
OUTPUT_NAMES = ["scores", "boxes"]


class DetectionGraph(nn.Module):
    def __init__(self, model: SSDDetector):
        super().__init__()
        self.model = copy.deepcopy(model)
        self.model.head = fuse_head(self.model.head)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        return self.model.decode(*self.model(images))
