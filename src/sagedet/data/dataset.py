"""Decoding, augmentation and batching of raw samples, run inside DataLoader workers.

A worker must not raise for bad data: the DataLoader would re-raise it wrapped in a traceback. A
sample that fails to decode becomes a :class:`SampleError`, :func:`collate` passes it on instead of
a batch, and the training loop calls :func:`check_batch`, which raises a plain
:class:`~sagedet.errors.DataError` in the main process.

Images are decoded as stored: the EXIF orientation tag is NOT applied, because annotations (image+JSON
``left``/``top``, RecordIO corners) refer to the stored pixels, as ``image_size`` in the JSON does.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Callable

import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from sagedet.data.sample import RawSample, SampleSource
from sagedet.errors import DataError

DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)
"""What PIL raises for an image it cannot read (truncated, corrupt, unknown format, too large)."""


def not_rgb_reason(mode: str) -> str:
    """Why an image in PIL mode ``mode`` (anything but "RGB") is refused."""
    return (
        f"has {Image.getmodebands(mode)} channel(s) (PIL mode {mode}); "
        "only 3-channel RGB images are supported"
    )


@dataclass
class Sample:
    """One decoded, transformed sample.

    image: uint8 (3, S, S) (``sagedet.data.transforms.scale_pixels`` makes it the model's input on the
    device); boxes: float32 (N, 4) xmin, ymin, xmax, ymax normalized to
    [0, 1] in the transformed frame; labels: int64 (N,); region: float32 (4,), the same for where the
    input image's pixels lie, the rest being the zoom-out canvas (the whole frame where the transform
    does not say).
    """

    name: str
    image: torch.Tensor
    boxes: torch.Tensor
    labels: torch.Tensor
    region: torch.Tensor = field(default_factory=lambda: torch.tensor([0.0, 0.0, 1.0, 1.0]))


@dataclass
class SampleError:
    """A sample that could not be decoded, returned (not raised) from a worker."""

    name: str
    reason: str


@dataclass
class Batch:
    """B samples: images uint8 (B, 3, S, S); boxes (B, M, 4) padded with 0; labels (B, M) padded with -1;
    regions (B, 4), each sample's ``region`` (None: whole frames).

    M is the largest object count in the batch, at least 1; a label of -1 marks padding.
    """

    images: torch.Tensor
    boxes: torch.Tensor
    labels: torch.Tensor
    names: list[str]
    regions: torch.Tensor | None = None

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        return self._map(lambda tensor: tensor.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> Batch:
        """Called by DataLoader(pin_memory=True)."""
        return self._map(torch.Tensor.pin_memory)

    def _map(self, apply: Callable[[torch.Tensor], torch.Tensor]) -> Batch:
        return Batch(apply(self.images), apply(self.boxes), apply(self.labels), self.names,
                     None if self.regions is None else apply(self.regions))


class DetectionDataset(torch.utils.data.Dataset):
    """Decodes the samples of ``source`` and runs ``transform`` (see :mod:`sagedet.data.transforms`).

    The index is a sample's position in ``source``, or the raw sample itself (streams, see
    :mod:`sagedet.data.loaders`: then ``source`` may be None).
    """

    def __init__(self, source: SampleSource | None, transform: Callable) -> None:
        self.source = source
        self.transform = transform

    def __len__(self) -> int:
        if self.source is None:
            raise TypeError("a streamed data set has no length")
        return len(self.source)

    def __getitem__(self, index: int | RawSample) -> Sample | SampleError:
        if isinstance(index, RawSample):
            name, raw = index.name, index
        else:
            name = self.source.name(index)
            try:
                raw = self.source.read(index)
            except OSError as error:
                return SampleError(name, f"cannot be read: {error}")
            except DataError as error:
                return SampleError(name, str(error).removeprefix(f"{name}: "))
        try:
            with Image.open(io.BytesIO(raw.image_bytes)) as image:
                image.load()
                if image.mode != "RGB":
                    return SampleError(name, not_rgb_reason(image.mode))
                pixels = F.pil_to_tensor(image)
        except DECODE_ERRORS as error:
            return SampleError(name, f"does not decode: {error}")

        height, width = pixels.shape[-2:]
        boxes = tv_tensors.BoundingBoxes(
            torch.tensor(raw.objects.boxes) * torch.tensor([width, height, width, height]),
            format=tv_tensors.BoundingBoxFormat.XYXY,
            canvas_size=(height, width),
        )
        target = {"boxes": boxes, "labels": torch.tensor(raw.objects.labels)}
        image, target = self.transform(tv_tensors.Image(pixels), target)

        height, width = image.shape[-2:]
        scale = torch.tensor([width, height, width, height], dtype=torch.float32)
        sample = Sample(
            name=name,
            image=image.as_subclass(torch.Tensor),
            boxes=target["boxes"].as_subclass(torch.Tensor) / scale,
            labels=target["labels"],
        )
        if "region" in target:
            sample.region = target["region"].reshape(4).float() / scale
        return sample


def collate(samples: list[Sample | SampleError]) -> Batch | SampleError:
    """Stacks samples into a :class:`Batch`, or returns the first :class:`SampleError` among them."""
    for sample in samples:
        if isinstance(sample, SampleError):
            return sample
    most = max(1, max(len(sample.labels) for sample in samples))
    boxes = torch.zeros(len(samples), most, 4)
    labels = torch.full((len(samples), most), -1, dtype=torch.int64)
    for row, sample in enumerate(samples):
        count = len(sample.labels)
        boxes[row, :count] = sample.boxes
        labels[row, :count] = sample.labels
    images = torch.stack([sample.image for sample in samples])
    regions = torch.stack([sample.region for sample in samples])
    return Batch(images, boxes, labels, [sample.name for sample in samples], regions)


def check_batch(batch: Batch | SampleError) -> Batch:
    """Returns ``batch``, or raises :class:`DataError` for the sample that failed to decode."""
    if isinstance(batch, SampleError):
        raise DataError(f"{batch.name}: {batch.reason}")
    return batch
