"""Augmentation and resizing pipelines (torchvision.transforms.v2), run inside DataLoader workers.

A pipeline is called as ``transform(image, target)`` with a ``tv_tensors.Image`` (uint8, 3×H×W)
and ``target = {"boxes": tv_tensors.BoundingBoxes (XYXY, absolute pixels), "labels": int64}``; it
returns the same pair with the image resized to S×S (the ``image_shape`` hyperparameter: SageMaker's
built-in resizes every input to a square, ignoring aspect ratio), still uint8: batches cross from the
workers through shared memory, into pinned memory and to the device at a quarter of float32's bytes,
and :func:`scale_pixels` makes them the model's float input on the device.
Boxes stay in absolute pixels of the output frame. Pipelines are picklable (no lambdas), so
DataLoader workers can be spawned.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torchvision import tv_tensors
from torchvision.ops import box_iou
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

MEAN_PIXEL = (123, 117, 104)
"""ImageNet mean colour (uint8 RGB): the canvas colour of RandomZoomOut, as in the SSD paper."""


def train_transform(image_shape: int) -> Callable:
    """SSD's geometric augmentation: zoom out, IoU crop and resize to S×S in one step
    (:class:`RandomZoomOutCropResize`), then flip.

    SSD's photometric distortion comes after it, on whole batches on the training device
    (:mod:`sagedet.data.batch_photometric`, called by the Trainer), within ``target["region"]``: where
    the input image's pixels lie in the output, moved by every step as the image is (XYXY, output
    pixels, shape (1, 4)); the zoom-out canvas around it keeps its mean colour. Boxes cut away by the crop or
    shrunk below one output pixel are dropped with their labels, so an image may leave with fewer
    objects (or none) than it came with.
    """
    return v2.Compose(
        [
            _TrackImageRegion(),
            RandomZoomOutCropResize(image_shape),
            v2.RandomHorizontalFlip(),
            _ImageRegionOut(),
            v2.SanitizeBoundingBoxes(labels_getter=_labels),
        ]
    )


def eval_transform(image_shape: int) -> Callable:
    """Resize to S×S (uint8, as the server does); boxes follow the resize, none is dropped."""
    return v2.Resize((image_shape, image_shape), antialias=True)


def scale_pixels(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (any shape) → float32 in [0, 1], the model's input: the last step of every pipeline,
    on the model's device (training and validation batches, the server's requests)."""
    return F.to_dtype(images, torch.float32, scale=True)


def _labels(inputs: tuple[Any, dict[str, Any]]) -> torch.Tensor:
    """Where SanitizeBoundingBoxes finds the labels to drop along with their boxes."""
    return inputs[1]["labels"]


class RandomIoUCrop(torch.nn.Module):
    """SSD's IoU crop, as torchvision's ``v2.RandomIoUCrop`` with its defaults, its trials drawn at once.

    Like torchvision's: pick a minimum IoU from ``OPTIONS`` (1.0: leave the image as it is); try up to
    ``trials`` windows of 0.3 to 1 times the width and height, aspect ratio 0.5 to 2, at a random
    place; take the first with the centre of some box inside it and one such box overlapping it by at
    least that IoU, else pick again. Boxes whose centre falls outside the window are set to zero, for
    ``SanitizeBoundingBoxes`` to drop. The trials are independent draws, so checking all of one pick's
    trials in a few tensor operations and taking the first that passes gives the same distribution of
    windows as torchvision's loop, which checks them one by one in Python (10.6 of the 35.4 ms a data
    worker spent on a 500x375 JPEG, bench/checks/augmentation_cost.py --stages). Unlike torchvision's, which refuses
    them, an image without boxes (accepted in training, though it contributes no loss) is passed through uncropped.

    Called as ``crop(image, target)`` with XYXY boxes, as in :func:`train_transform`; a
    ``target["region"]`` is cropped with the image.
    """

    OPTIONS = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)

    def __init__(self, min_scale: float = 0.3, max_scale: float = 1.0, min_aspect_ratio: float = 0.5,
                 max_aspect_ratio: float = 2.0, trials: int = 40) -> None:
        super().__init__()
        self.min_scale, self.max_scale = min_scale, max_scale
        self.min_aspect_ratio, self.max_aspect_ratio = min_aspect_ratio, max_aspect_ratio
        self.trials = trials

    def forward(self, image: Any, target: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        boxes = target["boxes"]
        if boxes.shape[0] == 0:
            return image, target
        window = self.window(*F.get_size(image), boxes.as_subclass(torch.Tensor))
        if window is None:
            return image, target
        top, left, height, width, inside = window
        cropped = F.crop(boxes, top, left, height, width)
        cropped[~inside] = 0
        target = {**target, "boxes": cropped}
        if "region" in target:
            target["region"] = F.crop(target["region"], top, left, height, width)
        return F.crop(image, top, left, height, width), target

    def window(self, height: int, width: int, boxes: torch.Tensor) -> tuple[int, int, int, int, torch.Tensor] | None:
        """(top, left, height, width, which boxes have their centre inside), or None: no crop."""
        centre_x = (boxes[:, 0] + boxes[:, 2]) / 2
        centre_y = (boxes[:, 1] + boxes[:, 3]) / 2
        while True:
            min_iou = self.OPTIONS[int(torch.randint(len(self.OPTIONS), ()))]
            if min_iou >= 1.0:
                return None
            scale = self.min_scale + (self.max_scale - self.min_scale) * torch.rand(self.trials, 2)
            new_w, new_h = (width * scale[:, 0]).floor(), (height * scale[:, 1]).floor()
            place = torch.rand(self.trials, 2)
            left, top = ((width - new_w) * place[:, 0]).floor(), ((height - new_h) * place[:, 1]).floor()
            right, bottom = left + new_w, top + new_h
            aspect = new_w / new_h
            inside = ((left[:, None] < centre_x) & (centre_x < right[:, None])
                      & (top[:, None] < centre_y) & (centre_y < bottom[:, None]))  # (trials, boxes)
            overlap = box_iou(torch.stack([left, top, right, bottom], dim=1), boxes.to(left.dtype))
            best = torch.where(inside, overlap, -1.0).amax(dim=1)
            passed = ((self.min_aspect_ratio <= aspect) & (aspect <= self.max_aspect_ratio) & (new_w > 0) & (new_h > 0)
                      & (best >= min_iou) & inside.any(dim=1))
            if passed.any():
                i = int(passed.to(torch.uint8).argmax())
                return int(top[i]), int(left[i]), int(new_h[i]), int(new_w[i]), inside[i]


class RandomZoomOutCropResize(torch.nn.Module):
    """SSD's zoom out (torchvision's ``v2.RandomZoomOut``), IoU crop (:class:`RandomIoUCrop`) and resize
    to S×S in one step, without making the zoom-out canvas.

    The three in a row fill a canvas of up to 4×4 times the image, crop a window from it and resize
    the window, canvas and all (zoom out, crop and resize took 1.55, 1.37 and 2.38 of the 9.3 ms a data
    worker spent on a 500x375 JPEG, bench/checks/augmentation_cost.py --stages). Here the same
    parameters are drawn, in the same order from the same generator, and only the visible part of the
    image is resized, into its place on an S×S output of the canvas colour. That place is rounded to
    whole output pixels, and its boxes and region are mapped by the same rounded scale, so they stay
    on the pixels they cover. Against the three steps (tested): the same windows, boxes and region within
    half an output pixel, pixels away from the image's edge within half the step between neighbours;
    along the edge the image no longer blends into the canvas.

    Called as ``transform(image, target)`` with a uint8 image and XYXY boxes; boxes whose centre the
    crop cuts away are set to zero (for ``SanitizeBoundingBoxes``), the others are clipped to the
    window; a ``target["region"]`` becomes the image's place in the output.
    """

    def __init__(self, image_shape: int, fill: tuple[int, int, int] = MEAN_PIXEL,
                 side_range: tuple[float, float] = (1.0, 4.0), p: float = 0.5) -> None:
        super().__init__()
        self.image_shape, self.fill, self.side_range, self.p = image_shape, fill, side_range, p
        self.crop = RandomIoUCrop()

    def forward(self, image: Any, target: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        if image.dtype != torch.uint8:
            raise TypeError(f"RandomZoomOutCropResize takes uint8 images, not {image.dtype}")
        height, width = F.get_size(image)
        left, top, canvas_width, canvas_height = self._zoom_out(height, width)
        shift = torch.tensor([left, top, left, top], dtype=torch.float32)
        boxes = target["boxes"].as_subclass(torch.Tensor).float() + shift  # on the canvas
        window = self.crop.window(canvas_height, canvas_width, boxes) if boxes.shape[0] else None
        window_top, window_left, window_height, window_width, inside = window or (0, 0, canvas_height,
                                                                                   canvas_width, None)
        # the part of the image inside the window, on the canvas, and its place in the output
        x0, x1 = max(left, window_left), min(left + width, window_left + window_width)
        y0, y1 = max(top, window_top), min(top + height, window_top + window_height)
        size = self.image_shape
        out_x0 = round((x0 - window_left) * size / window_width)
        out_y0 = round((y0 - window_top) * size / window_height)
        out_x1 = max(out_x0 + 1, round((x1 - window_left) * size / window_width))
        out_y1 = max(out_y0 + 1, round((y1 - window_top) * size / window_height))

        part = image.as_subclass(torch.Tensor)[:, y0 - top:y1 - top, x0 - left:x1 - left]
        resized = F.resize(part, [out_y1 - out_y0, out_x1 - out_x0], antialias=True)
        if (out_x0, out_y0, out_x1, out_y1) == (0, 0, size, size):
            output = resized
        else:
            output = torch.tensor(self.fill, dtype=torch.uint8)[:, None, None].repeat(1, size, size)
            output[:, out_y0:out_y1, out_x0:out_x1] = resized

        low = torch.tensor([x0, y0, x0, y0], dtype=torch.float32)
        high = torch.tensor([x1, y1, x1, y1], dtype=torch.float32)
        scale = torch.tensor([(out_x1 - out_x0) / (x1 - x0), (out_y1 - out_y0) / (y1 - y0)] * 2)
        origin = torch.tensor([out_x0, out_y0, out_x0, out_y0], dtype=torch.float32)
        mapped = (torch.minimum(torch.maximum(boxes, low), high) - low) * scale + origin
        if inside is not None:
            mapped[~inside] = 0
        target = {**target, "boxes": tv_tensors.BoundingBoxes(mapped, format=tv_tensors.BoundingBoxFormat.XYXY,
                                                              canvas_size=(size, size))}
        if "region" in target:
            target["region"] = tv_tensors.BoundingBoxes([[out_x0, out_y0, out_x1, out_y1]], dtype=torch.float32,
                                                        format=tv_tensors.BoundingBoxFormat.XYXY,
                                                        canvas_size=(size, size))
        return tv_tensors.Image(output), target

    def _zoom_out(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(left, top, canvas width, canvas height), drawn as ``v2.RandomZoomOut`` draws them."""
        if torch.rand(1) >= self.p:
            return 0, 0, width, height
        low, high = self.side_range
        ratio = low + torch.rand(1) * (high - low)
        canvas_width, canvas_height = int(width * ratio), int(height * ratio)
        place = torch.rand(2)
        return (int((canvas_width - width) * place[0]), int((canvas_height - height) * place[1]),
                canvas_width, canvas_height)


class _TrackImageRegion(torch.nn.Module):
    """Adds ``target["region"]``, the whole input image as a box, for the geometric steps to move."""

    def forward(self, image: Any, target: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        height, width = F.get_size(image)
        region = tv_tensors.BoundingBoxes([[0, 0, width, height]], format=tv_tensors.BoundingBoxFormat.XYXY,
                                          canvas_size=(height, width), dtype=torch.float32)
        return image, {**target, "region": region}


class _ImageRegionOut(torch.nn.Module):
    """Turns ``target["region"]`` into a plain tensor, before ``SanitizeBoundingBoxes``, which would take
    it for the sample's boxes."""

    def forward(self, image: Any, target: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        return image, {**target, "region": target["region"].as_subclass(torch.Tensor)}
