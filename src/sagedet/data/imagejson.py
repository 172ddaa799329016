"""SageMaker's image+JSON training format (File mode) as a :class:`~sagedet.data.sample.SampleSource`.

The images of a channel (``train``) lie anywhere under its folder as .jpg, .jpeg or .png files
(suffix case-insensitive); its annotation channel (``train_annotation``) holds one JSON per image,
with the image's base name, anywhere under its folder::

    {"file": "dir/img1.jpg",
     "image_size": [{"width": 500, "height": 400, "depth": 3}],
     "annotations": [{"class_id": 0, "left": 111, "top": 134, "width": 61, "height": 128}],
     "categories": [{"class_id": 0, "name": "dog"}]}

``file`` is the image's path relative to the image channel; if no image is there, the unique image
named like the JSON (any folder, any of the suffixes) is used. ``file`` may be left out; ``categories``
is optional; other keys are ignored. Boxes are in pixels of the stored image (EXIF orientation is
not applied), origin top-left; a box may stick out of the image by up to 1 pixel (rounding) and is
clipped. Class ids are integers in [0, num_classes). An image with no annotations is a negative
example. Only 3-channel (RGB) JPEG and PNG images are accepted. Hidden files and folders (name
starting with ".") are skipped; other file types are ignored.

Everything is indexed and checked up front from the JSON and the image headers (no pixel decoding);
all problems found are reported in one :class:`~sagedet.errors.DataError`.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image

from sagedet.data.dataset import DECODE_ERRORS, not_rgb_reason
from sagedet.data.sample import Objects, RawSample
from sagedet.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
IMAGE_FORMATS = ("JPEG", "MPO", "PNG")  # PIL calls camera JPEGs with an embedded preview "MPO"
BOX_KEYS = ("class_id", "left", "top", "width", "height")
TOLERANCE = 1.0  # pixels a box may stick out of its image before it counts as outside
MAX_REPORTED = 20


@dataclass(frozen=True)
class _Entry:
    name: str
    path: Path
    objects: Objects


class ImageJsonSource:
    """The samples of one image+JSON channel, e.g. ``train`` with ``train_annotation``."""

    def __init__(self, image_dir: Path, annotation_dir: Path, num_classes: int, channel: str) -> None:
        self.class_names: dict[int, str] = {}
        self._channel = channel
        self._annotation_channel = f"{channel}_annotation"
        self._num_classes = num_classes
        self._category_files: dict[int, str] = {}

        images = _find_files(Path(image_dir), IMAGE_SUFFIXES, f"The {channel} channel")
        annotations = _find_files(Path(annotation_dir), (".json",), f"The {self._annotation_channel} channel")
        if not images:
            raise DataError(
                f"The {channel} channel ({image_dir}) holds no images: expected .jpg, .jpeg or .png files "
                "(searched recursively)"
            )
        if not annotations:
            raise DataError(
                f"The {self._annotation_channel} channel ({annotation_dir}) holds no .json files: "
                f"expected one annotation JSON per image of the {channel} channel"
            )

        by_stem: dict[str, list[str]] = defaultdict(list)
        for rel in images:
            by_stem[PurePosixPath(rel).stem].append(rel)
        claimed: dict[str, str] = {}  # image -> the JSON describing it
        entries: list[_Entry] = []
        errors: list[str] = []
        for json_rel, json_path in annotations.items():
            json_name = f"{self._annotation_channel}/{json_rel}"
            try:
                document = _load_object(json_path, json_name)
                image_rel = self._resolve_image(json_name, json_rel, document, images, by_stem)
                if image_rel in claimed:
                    raise DataError(
                        f"{json_name}: describes {channel}/{image_rel}, which {claimed[image_rel]} describes "
                        "too; each image needs exactly one annotation JSON"
                    )
                claimed[image_rel] = json_name
                entries.append(self._entry(json_name, document, image_rel, images[image_rel]))
            except DataError as error:
                errors.append(str(error))
        for rel in images:
            if rel not in claimed:
                errors.append(
                    f"{channel}/{rel}: has no annotation JSON: expected {PurePosixPath(rel).stem}.json in the "
                    f"{self._annotation_channel} channel"
                )
        if errors:
            raise DataError(_summary(errors, f"the {channel} data"))
        self._entries = sorted(entries, key=lambda entry: entry.name)

    def __len__(self) -> int:
        return len(self._entries)

    def name(self, index: int) -> str:
        """The image's path with the channel name in front, e.g. ``train/sample_image/img1.jpg``."""
        return self._entries[index].name

    def read(self, index: int) -> RawSample:
        entry = self._entries[index]
        return RawSample(entry.name, entry.path.read_bytes(), entry.objects)

    def _resolve_image(
        self, json_name: str, json_rel: str, document: dict, images: dict[str, Path], by_stem: dict[str, list[str]]
    ) -> str:
        file = document.get("file")
        if file is not None and not isinstance(file, str):
            raise DataError(f"{json_name}: 'file' must be a string (the image's path in the {self._channel} channel)")
        if file is not None and PurePosixPath(file).as_posix() in images:
            return PurePosixPath(file).as_posix()
        stem = PurePosixPath(json_rel).stem
        candidates = by_stem.get(stem, [])
        if len(candidates) == 1:
            return candidates[0]
        missing = f"'file' {file!r} is not in the {self._channel} channel" if file is not None else "it has no 'file'"
        if not candidates:
            raise DataError(
                f"{json_name}: image not found: {missing}, and the {self._channel} channel holds no image named "
                f"{stem}.jpg, .jpeg or .png"
            )
        raise DataError(
            f"{json_name}: image not found: {missing}, and several images are named {stem}: "
            f"{', '.join(candidates)}; set 'file' to the image's path relative to the channel"
        )

    def _entry(self, json_name: str, document: dict, image_rel: str, image_path: Path) -> _Entry:
        image_name = f"{self._channel}/{image_rel}"
        width, height = _image_header(image_name, image_path)
        claimed_width, claimed_height = _image_size(json_name, document)
        if (claimed_width, claimed_height) != (width, height):
            hint = " (EXIF orientation is not applied: sizes refer to the stored pixels)"
            raise DataError(
                f"{json_name}: image_size says {claimed_width}x{claimed_height} but {image_name} is {width}x{height}"
                + (hint if (claimed_width, claimed_height) == (height, width) else "")
            )
        annotations = document["annotations"]
        if not isinstance(annotations, list):
            raise DataError(f"{json_name}: 'annotations' must be a list of objects, got {_kind(annotations)}")
        boxes = np.zeros((len(annotations), 4), dtype=np.float32)
        labels = np.zeros(len(annotations), dtype=np.int64)
        for i, annotation in enumerate(annotations):
            where = f"{json_name}: annotations[{i}]"
            labels[i], boxes[i] = self._box(where, annotation, width, height)
        self._add_categories(json_name, document.get("categories"))
        return _Entry(image_name, image_path, Objects(boxes, labels))

    def _box(self, where: str, annotation: Any, width: int, height: int) -> tuple[int, list[float]]:
        """The class id and the box normalized to [0, 1] (xmin, ymin, xmax, ymax), clipped to the image."""
        if not isinstance(annotation, dict):
            raise DataError(f"{where} must be an object with keys {', '.join(BOX_KEYS)}, got {_kind(annotation)}")
        for key in BOX_KEYS:
            if key not in annotation:
                raise DataError(f"{where} lacks the required key '{key}' (keys: {', '.join(BOX_KEYS)})")
            if not _is_number(annotation[key]):
                raise DataError(f"{where}: '{key}' must be a number, got {annotation[key]!r}")
        class_id = self._class_id(where, annotation["class_id"])
        left, top, box_width, box_height = (float(annotation[key]) for key in BOX_KEYS[1:])
        if box_width <= 0 or box_height <= 0:
            raise DataError(f"{where}: width and height must be > 0, got width {box_width:g}, height {box_height:g}")
        xmin, xmax = min(max(left, 0.0), width), min(left + box_width, width)
        ymin, ymax = min(max(top, 0.0), height), min(top + box_height, height)
        outside = (
            left < -TOLERANCE or top < -TOLERANCE
            or left + box_width > width + TOLERANCE or top + box_height > height + TOLERANCE
        )
        if outside or xmax <= xmin or ymax <= ymin:
            raise DataError(
                f"{where}: box left={left:g}, top={top:g}, width={box_width:g}, height={box_height:g} lies outside "
                f"the {width}x{height} image (boxes must lie within it, give or take 1 pixel)"
            )
        return class_id, [xmin / width, ymin / height, xmax / width, ymax / height]

    def _class_id(self, where: str, value: Any) -> int:
        if not (_is_number(value) and float(value).is_integer() and 0 <= value < self._num_classes):
            raise DataError(
                f"{where}: class_id {value!r} is not an integer in [0, {self._num_classes}) "
                f"(num_classes is {self._num_classes})"
            )
        return int(value)

    def _add_categories(self, json_name: str, categories: Any) -> None:
        if categories is None:
            return
        if not isinstance(categories, list):
            raise DataError(f"{json_name}: 'categories' must be a list of objects, got {_kind(categories)}")
        for i, category in enumerate(categories):
            where = f"{json_name}: categories[{i}]"
            if not (isinstance(category, dict) and isinstance(category.get("name"), str) and "class_id" in category):
                raise DataError(f"{where} must be an object with an integer 'class_id' and a string 'name'")
            class_id, name = self._class_id(where, category["class_id"]), category["name"]
            known = self.class_names.setdefault(class_id, name)
            first_file = self._category_files.setdefault(class_id, json_name)
            if known != name:
                raise DataError(
                    f"{where} names class_id {class_id} {name!r}, but {first_file} names it {known!r}"
                )


def _find_files(root: Path, suffixes: tuple[str, ...], channel: str) -> dict[str, Path]:
    """The files under ``root`` with one of ``suffixes``, by POSIX path relative to ``root``, sorted."""
    if not root.is_dir():
        raise DataError(f"{channel} is missing: {root} is not a folder")
    found = {}
    for folder, subfolders, files in os.walk(root, followlinks=True):
        subfolders[:] = [sub for sub in subfolders if not sub.startswith(".")]
        for file in files:
            if not file.startswith(".") and os.path.splitext(file)[1].lower() in suffixes:
                path = Path(folder, file)
                found[path.relative_to(root).as_posix()] = path
    return dict(sorted(found.items()))


def _load_object(path: Path, json_name: str) -> dict:
    try:
        document = json.loads(path.read_bytes())
    except (ValueError, OSError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise DataError(f"{json_name}: is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise DataError(f"{json_name}: must be a JSON object, got {_kind(document)}")
    for key in ("image_size", "annotations"):
        if key not in document:
            raise DataError(
                f"{json_name}: lacks the required key '{key}' (an annotation JSON has 'file', 'image_size', "
                "'annotations' and optionally 'categories')"
            )
    return document


def _image_size(json_name: str, document: dict) -> tuple[Any, Any]:
    size = document["image_size"]
    if not (isinstance(size, list) and size and isinstance(size[0], dict)):
        raise DataError(f"{json_name}: 'image_size' must be a list of one object, got {_kind(size)}")
    width, height = size[0].get("width"), size[0].get("height")
    if not all(isinstance(value, int) and not isinstance(value, bool) and value > 0 for value in (width, height)):
        raise DataError(
            f"{json_name}: image_size 'width' and 'height' must be positive integers, got {width!r}, {height!r}"
        )
    return width, height


def _image_header(image_name: str, path: Path) -> tuple[int, int]:
    """The width and height of an RGB JPEG or PNG, read from its header only."""
    try:
        with Image.open(path) as image:
            image_format, mode, size = image.format, image.mode, image.size
    except DECODE_ERRORS as error:
        raise DataError(f"{image_name}: does not decode as JPEG or PNG ({error})") from None
    if image_format not in IMAGE_FORMATS:
        raise DataError(f"{image_name}: is a {image_format} image; only JPEG and PNG images are supported")
    if mode != "RGB":
        raise DataError(f"{image_name}: {not_rgb_reason(mode)}")
    return size


def _is_number(value: Any) -> bool:
    """An int or float (not a bool), finite and within float range."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) < 1e300


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string"}.get(type(value), repr(value))


def _summary(errors: list[str], what: str) -> str:
    shown = "\n".join(errors[:MAX_REPORTED])
    more = f"\n... and {len(errors) - MAX_REPORTED} more" if len(errors) > MAX_REPORTED else ""
    return f"{len(errors)} problem(s) in {what}:\n{shown}{more}"
