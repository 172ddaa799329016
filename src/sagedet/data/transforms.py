"""Augmentation and resizing pipelines (torchvision.transforms.v2), run inside DataLoader workers.

A pipeline is called as ``transform(image, target)`` with a ``tv_tensors.Image`` (uint8, 3×H×W)
and ``target = {"boxes": tv_tensors.BoundingBoxes (XYXY, absolute pixels), "labels": int64}``; it
returns the same pair with the image float32 in [0, 1] and resized to S×S (the ``image_shape``
hyperparameter: SageMaker's built-in resizes every input to a square, ignoring aspect ratio).
Boxes stay in absolute pixels of the output frame. Pipelines are picklable (no lambdas), so
DataLoader workers can be spawned.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torchvision.transforms import v2

MEAN_PIXEL = (123, 117, 104)
"""ImageNet mean colour (uint8 RGB): the canvas colour of RandomZoomOut, as in the SSD paper."""


def train_transform(image_shape: int) -> Callable:
    """SSD's augmentation: photometric distortion, zoom out, IoU crop, flip, then resize to S×S.

    Boxes cut away by the crop or shrunk below one output pixel are dropped with their labels, so an
    image may leave with fewer objects (or none) than it came with.
    """
    return v2.Compose(
        [
            v2.RandomPhotometricDistort(),
            v2.RandomZoomOut(fill=MEAN_PIXEL, side_range=(1.0, 4.0), p=0.5),
            _WithBoxesOnly(v2.RandomIoUCrop()),
            v2.RandomHorizontalFlip(),
            v2.Resize((image_shape, image_shape), antialias=True),
            v2.SanitizeBoundingBoxes(labels_getter=_labels),
            v2.ToDtype(torch.float32, scale=True),
        ]
    )


def eval_transform(image_shape: int) -> Callable:
    """Resize to S×S and scale to [0, 1]; boxes follow the resize, none is dropped."""
    return v2.Compose(
        [
            v2.Resize((image_shape, image_shape), antialias=True),
            v2.ToDtype(torch.float32, scale=True),
        ]
    )


def _labels(inputs: tuple[Any, dict[str, Any]]) -> torch.Tensor:
    """Where SanitizeBoundingBoxes finds the labels to drop along with their boxes."""
    return inputs[1]["labels"]


class _WithBoxesOnly(torch.nn.Module):
    """Applies ``transform`` to samples that have boxes and passes the others through.

    RandomIoUCrop aims its crops at boxes and rejects inputs without any; an image with no objects
    (a negative example) is therefore left uncropped.
    """

    def __init__(self, transform: Callable) -> None:
        super().__init__()
        self.transform = transform

    def forward(self, image: Any, target: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        if target["boxes"].shape[0] == 0:
            return image, target
        return self.transform(image, target)
