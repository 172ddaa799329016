"""SSD's photometric distortion for a whole batch at once, on the training device.

The same distortion as torchvision's ``v2.RandomPhotometricDistort`` (the SSD paper's): each image
independently gets, each with probability ``p``, a brightness, a contrast, a saturation and a hue
change and a random permutation of its channels, the contrast before or after saturation and hue
with even odds; factors drawn uniformly from the same ranges, the same formulas (torchvision's
grayscale weights, blends clamped to [0, 1], hue shifted in HSV space).

Why not torchvision's transform in the DataLoader workers: it runs per image, on the CPU, at the
image's full resolution, and its hue change converts to HSV and back in many passes; it was 18.6 of the
35.4 ms a worker spent on a 500x375 JPEG (bench/checks/augmentation_cost.py --stages), which on a GPU machine
caps training at a few hundred images/s however fast the GPU is. Here it runs after the resize, on the
S x S batch, in a few vectorized passes with per-image factors (torchvision's functional ops take one
factor per call), on the GPU when training there. Each image's ``region`` (where its own pixels lie
after the zoom out and crop) limits it, so that the zoom-out canvas keeps its mean colour as in
torchvision's order; the contrast blends towards the mean of the region's pixels (torchvision's: of
the whole image before the crop).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)
"""torchvision's ``rgb_to_grayscale`` weights (ITU-R 601-2 luma)."""


@dataclass(frozen=True)
class DistortionParameters:
    """Per-image parameters, each of shape (B,); a factor of 1, a hue shift of 0 and the identity
    permutation where the change was not drawn."""

    brightness: torch.Tensor
    contrast_before: torch.Tensor  # contrast factor applied before saturation and hue
    saturation: torch.Tensor
    hue: torch.Tensor  # shift as a fraction of the hue circle
    contrast_after: torch.Tensor  # contrast factor applied after them
    permutation: torch.Tensor  # (B, 3) channel order


@dataclass(frozen=True)
class BatchPhotometricDistortion:
    """Callable on a float batch (B, 3, H, W) in [0, 1] and its regions (see :func:`distort`); returns a
    new distorted batch.

    ``generator`` is a torch.Generator on the batches' device (None: the device's default one)."""

    brightness: tuple[float, float] = (0.875, 1.125)
    contrast: tuple[float, float] = (0.5, 1.5)
    saturation: tuple[float, float] = (0.5, 1.5)
    hue: tuple[float, float] = (-0.05, 0.05)
    p: float = 0.5
    generator: torch.Generator | None = None

    def sample(self, batch: int, device: torch.device) -> DistortionParameters:
        uniform = torch.rand(6, batch, device=device, generator=self.generator)
        drawn = torch.rand(5, batch, device=device, generator=self.generator) < self.p
        one = torch.ones(batch, device=device)

        def factor(row: int, span: tuple[float, float], applied: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
            low, high = span
            return torch.where(applied, low + (high - low) * uniform[row], identity)

        contrast_first = uniform[4] < 0.5
        shuffled = torch.rand(batch, 3, device=device, generator=self.generator).argsort(dim=1)
        identity_order = torch.arange(3, device=device).expand(batch, 3)
        return DistortionParameters(
            brightness=factor(0, self.brightness, drawn[0], one),
            contrast_before=factor(1, self.contrast, drawn[1] & contrast_first, one),
            saturation=factor(2, self.saturation, drawn[2], one),
            hue=factor(3, self.hue, drawn[3], torch.zeros_like(one)),
            contrast_after=factor(1, self.contrast, drawn[1] & ~contrast_first, one),
            permutation=torch.where(drawn[4, :, None], shuffled, identity_order),
        )

    def __call__(self, images: torch.Tensor, regions: torch.Tensor | None = None) -> torch.Tensor:
        return distort(images, self.sample(images.shape[0], images.device), regions=regions)


def distort(images: torch.Tensor, parameters: DistortionParameters, every_image: bool | None = None,
            regions: torch.Tensor | None = None) -> torch.Tensor:
    """Apply ``parameters`` to ``images`` (B, 3, H, W), float in [0, 1], in torchvision's order.

    ``regions`` (B, 4): where each image's own pixels lie (x0, y0, x1, y1 on the [0, 1] scale, see
    :class:`~sagedet.data.dataset.Sample`); only those pixels are distorted and the contrast blends
    towards their mean, so that the zoom-out canvas around them keeps its mean colour, as when the
    distortion comes before the zoom out. None: whole images.

    ``every_image`` (the default on a GPU): each change is computed for every image and kept where it
    was drawn; otherwise (the default on the CPU) only the images that drew it are computed, about half,
    which on a GPU would mean waiting for it to say which."""
    if every_image is None:
        every_image = images.device.type != "cpu"
    inside = None if regions is None else _inside(regions, *images.shape[-2:])
    original = images
    images = images.clone()
    _change(images, parameters.brightness != 1, _brighten, parameters.brightness, inside, every_image)
    _change(images, parameters.contrast_before != 1, _contrast, parameters.contrast_before, inside, every_image)
    _change(images, parameters.saturation != 1, _saturate, parameters.saturation, inside, every_image)
    _change(images, parameters.hue != 0, _rotate_hue, parameters.hue, inside, every_image)
    _change(images, parameters.contrast_after != 1, _contrast, parameters.contrast_after, inside, every_image)
    permuted = (parameters.permutation != torch.arange(3, device=images.device)).any(dim=1)
    _change(images, permuted, _permute, parameters.permutation, inside, every_image)
    return images if inside is None else torch.where(inside, images, original)


def _inside(regions: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, 1, H, W): whether each pixel's centre lies in its image's region."""
    x = (torch.arange(width, device=regions.device) + 0.5) / width
    y = (torch.arange(height, device=regions.device) + 0.5) / height
    across = (regions[:, 0, None] <= x) & (x < regions[:, 2, None])  # (B, W)
    down = (regions[:, 1, None] <= y) & (y < regions[:, 3, None])  # (B, H)
    return (down[:, :, None] & across[:, None, :]).unsqueeze(1)


Change = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]


def _change(images: torch.Tensor, drawn: torch.Tensor, change: Change, factor: torch.Tensor,
            inside: torch.Tensor | None, every_image: bool) -> None:
    """``images[i] = change(images[i], factor[i], inside[i])`` in place where ``drawn[i]``."""
    if every_image:
        images.copy_(torch.where(drawn[:, None, None, None], change(images, factor, inside), images))
    else:
        chosen = drawn.nonzero().squeeze(1)
        if len(chosen):
            images[chosen] = change(images[chosen], factor[chosen], None if inside is None else inside[chosen])


def _brighten(images: torch.Tensor, factor: torch.Tensor, inside: torch.Tensor | None) -> torch.Tensor:
    return _blend(images, torch.zeros((), device=images.device), factor)


def _contrast(images: torch.Tensor, factor: torch.Tensor, inside: torch.Tensor | None) -> torch.Tensor:
    """Blend towards the mean gray of the image, or of its region's pixels."""
    gray = _gray(images)
    if inside is None:
        mean = gray.mean(dim=(-2, -1), keepdim=True)
    else:
        mean = (gray * inside).sum(dim=(-2, -1), keepdim=True) / inside.sum(dim=(-2, -1), keepdim=True).clamp(min=1)
    return _blend(images, mean, factor)


def _saturate(images: torch.Tensor, factor: torch.Tensor, inside: torch.Tensor | None) -> torch.Tensor:
    return _blend(images, _gray(images), factor)


def _permute(images: torch.Tensor, order: torch.Tensor, inside: torch.Tensor | None) -> torch.Tensor:
    return images[torch.arange(len(images), device=images.device)[:, None], order]


def _blend(images: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``factor * images + (1 - factor) * other``, clamped to [0, 1], as torchvision blends."""
    factor = factor[:, None, None, None]
    return (factor * images + (1.0 - factor) * other).clamp_(0.0, 1.0)


def _gray(images: torch.Tensor) -> torch.Tensor:
    red, green, blue = images.unbind(dim=1)
    return (GRAY_WEIGHTS[0] * red + GRAY_WEIGHTS[1] * green + GRAY_WEIGHTS[2] * blue).unsqueeze(1)


def _rotate_hue(images: torch.Tensor, shift: torch.Tensor, inside: torch.Tensor | None) -> torch.Tensor:
    """Rotate each image's hue by ``shift`` (fractions of the circle); value and saturation kept.

    HSV to RGB as channel = V - C * clamp(min(k, 4 - k), 0, 1) with k = (n + 6 H) mod 6, n = 5, 3, 1
    for red, green, blue (V the largest channel, C the largest minus the smallest): one pass per
    channel instead of selecting among four candidates for six sectors."""
    red, green, blue = images.unbind(dim=1)
    smallest = torch.minimum(torch.minimum(red, green), blue)  # 5x faster than aminmax over the channels
    largest = torch.maximum(torch.maximum(red, green), blue)
    chroma = largest - smallest
    red_largest, green_largest = largest == red, largest == green
    difference = torch.where(red_largest, green - blue, torch.where(green_largest, blue - red, red - green))
    start = torch.where(red_largest, 6.0, torch.where(green_largest, 2.0, 4.0)) + 6.0 * shift[:, None, None]
    sector = difference.div_(torch.where(chroma > 0, chroma, 1.0)).add_(start)  # 6 (H + shift), mod 6 below
    channels = []
    for n in (5.0, 3.0, 1.0):
        k = torch.remainder(sector + n, 6.0)
        channels.append(largest - chroma * torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0))
    return torch.stack(channels, dim=1)
