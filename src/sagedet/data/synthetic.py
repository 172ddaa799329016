"""A generated detection data set in SageMaker's image+JSON layout, for tests, ``make demo`` and benchmarks.

Each image shows 1 to 3 shapes on a pale gradient with mild noise. The class decides the shape
(rectangle, ellipse, triangle) and its fill (solid, stripes, checks); the colours are random. The
fill is a cue that survives every SSD augmentation — channel permutation and colour jitter, crops
that cut through a shape, flips, zoom-out — so a small network learns the classes quickly; colour
alone would not (the photometric augmentation permutes channels). Shapes span 35-75% of the image's
shorter side, so that they stay learnable after zoom-out at small input sizes, and never overlap; and image sizes vary by ±20% around
``image_size``. A small SSD learns this from scratch in minutes on a CPU. The output is a function
of ``seed`` alone: give each channel its own seed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SYNTHETIC_CLASSES = ("rectangle", "ellipse", "triangle")
_SUFFIXES = {"jpeg": "jpg", "png": "png"}
_PLACEMENT_TRIES = 30
_PATTERN_CELL = 8  # pixels per stripe / check: coarse enough to survive a 4x zoom-out at 128 px


def write_synthetic_dataset(
    root: Path,
    channel: str,
    count: int,
    seed: int,
    image_size: tuple[int, int] = (160, 128),
    image_format: str = "jpeg",
) -> None:
    """Writes ``count`` images and their JSONs as SageMaker expects them for channel ``channel``.

    Layout: ``root/<channel>/images/<channel>_00000.jpg`` (or .png) and
    ``root/<channel>_annotation/<channel>_00000.json`` with ``"file": "images/<channel>_00000.jpg"``.
    ``image_size`` is (width, height); ``image_format`` is "jpeg" or "png". Boxes in the JSON are the
    exact pixel bounds of the drawn shapes.
    """
    if image_format not in _SUFFIXES:
        raise ValueError(f"image_format must be one of {', '.join(_SUFFIXES)}, got {image_format!r}")
    rng = np.random.default_rng(seed)
    image_dir = Path(root) / channel / "images"
    annotation_dir = Path(root) / f"{channel}_annotation"
    image_dir.mkdir(parents=True, exist_ok=True)
    annotation_dir.mkdir(parents=True, exist_ok=True)
    categories = [{"class_id": i, "name": name} for i, name in enumerate(SYNTHETIC_CLASSES)]
    options = {"quality": 92} if image_format == "jpeg" else {}

    for index in range(count):
        stem = f"{channel}_{index:05d}"
        file = f"images/{stem}.{_SUFFIXES[image_format]}"
        image, annotations = _draw(rng, image_size)
        image.save(image_dir.parent / file, format=image_format.upper(), **options)
        document = {
            "file": file,
            "image_size": [{"width": image.width, "height": image.height, "depth": 3}],
            "annotations": annotations,
            "categories": categories,
        }
        (annotation_dir / f"{stem}.json").write_text(json.dumps(document))


def _draw(rng: np.random.Generator, base_size: tuple[int, int]) -> tuple[Image.Image, list[dict]]:
    """One image and its annotations (pixel boxes, origin top-left)."""
    width, height = (round(side * rng.uniform(0.8, 1.2)) for side in base_size)
    image = _background(rng, width, height)
    annotations: list[dict] = []
    for _ in range(rng.integers(1, 4)):
        class_id = int(rng.integers(len(SYNTHETIC_CLASSES)))
        mask = _shape_mask(rng, class_id, width, height, annotations)
        if mask is None:
            continue
        image.paste(_fill(rng, class_id, width, height), mask=mask)
        left, top, right, bottom = mask.getbbox()
        annotations.append(
            {"class_id": class_id, "left": left, "top": top, "width": right - left, "height": bottom - top}
        )
    return image, annotations


def _fill(rng: np.random.Generator, class_id: int, width: int, height: int) -> Image.Image:
    """The class's fill: solid, horizontal stripes or checks (8 px) of a random strong colour and a dark
    shade of it (a contrast in brightness, which no channel permutation removes)."""
    first = np.array(_saturated_color(rng))
    second = first * 0.3
    ys, xs = np.mgrid[0:height, 0:width] // _PATTERN_CELL
    pattern = (np.zeros_like(ys), ys % 2, (xs + ys) % 2)[class_id % 3].astype(bool)
    pixels = np.where(pattern[..., None], second, first).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


def _saturated_color(rng: np.random.Generator) -> tuple[int, int, int]:
    """A random strong colour (any hue, saturation 0.6-1, value 0.35-0.8), distinct from the pale background."""
    hue = Image.new("HSV", (1, 1), (int(rng.integers(256)), int(rng.integers(153, 256)), int(rng.integers(90, 205))))
    return hue.convert("RGB").getpixel((0, 0))


def _background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A pale two-colour linear gradient in a random direction, with mild Gaussian noise."""
    start, end = rng.uniform(170, 240, size=(2, 3))
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:height, 0:width]
    ramp = xs * np.cos(angle) + ys * np.sin(angle)
    ramp = (ramp - ramp.min()) / max(np.ptp(ramp), 1.0)
    pixels = start + (end - start) * ramp[..., None] + rng.normal(0, 4, size=(height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def _shape_mask(
    rng: np.random.Generator, class_id: int, width: int, height: int, taken: list[dict]
) -> Image.Image | None:
    """A mask of one shape placed clear of the boxes in ``taken``, or None if none fits."""
    for _ in range(_PLACEMENT_TRIES):
        side = rng.uniform(0.35, 0.75) * min(width, height)
        aspect = rng.uniform(0.75, 1.33)
        box_width = min(round(side * aspect**0.5), width)
        box_height = min(round(side / aspect**0.5), height)
        left = int(rng.integers(0, width - box_width + 1))
        top = int(rng.integers(0, height - box_height + 1))
        if any(_overlaps((left, top, box_width, box_height), other) for other in taken):
            continue
        mask = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(mask)
        right, bottom = left + box_width - 1, top + box_height - 1
        if SYNTHETIC_CLASSES[class_id] == "rectangle":
            draw.rectangle((left, top, right, bottom), fill=255)
        elif SYNTHETIC_CLASSES[class_id] == "ellipse":
            draw.ellipse((left, top, right, bottom), fill=255)
        else:
            draw.polygon(((left, bottom), (right, bottom), ((left + right) / 2, top)), fill=255)
        return mask
    return None


def _overlaps(box: tuple[int, int, int, int], other: dict) -> bool:
    """Whether ``box`` (left, top, width, height) comes within a pixel of annotation ``other``."""
    left, top, width, height = box
    return not (
        left + width < other["left"]
        or other["left"] + other["width"] < left
        or top + height < other["top"]
        or other["top"] + other["height"] < top
    )
