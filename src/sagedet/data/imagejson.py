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
clipped. Class ids are integers in [0, num_classes). An image with no annotations is accepted but
contributes no loss (it does not act as a negative example): hard negative mining takes 3 background
default boxes per matched one within each image, as torchvision's SSD does, and it has no matched
one. Only 3-channel (RGB) JPEG and PNG images are accepted. Hidden files and folders (name starting
with ".") are skipped; other file types are ignored.

Everything is indexed and checked up front from the JSON and the image headers (no pixel decoding);
all problems found are reported in one :class:`~sagedet.errors.DataError`.
"""

from __future__ import annotations

import io
import json
import os
from collections import defaultdict
from pathlib import Path, PurePosixPath
from typing import Any

from PIL import Image

from sagedet.data.annotations import ClassNames, kind as _kind, pixel_annotations
from sagedet.data.dataset import DECODE_ERRORS, not_rgb_reason
from sagedet.data.sample import ImageFile, ImageFiles, problems_report
from sagedet.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
IMAGE_FORMATS = ("JPEG", "MPO", "PNG")  # PIL calls camera JPEGs with an embedded preview "MPO"


class ImageJsonSource(ImageFiles):
    """The samples of one image+JSON channel, e.g. ``train`` with ``train_annotation``."""

    def __init__(self, image_dir: Path, annotation_dir: Path, num_classes: int, channel: str) -> None:
        self._categories = ClassNames(num_classes)
        self.class_names: dict[int, str] = self._categories.names
        self._channel = channel
        self._annotation_channel = f"{channel}_annotation"
        self._num_classes = num_classes

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
        entries: list[ImageFile] = []
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
            raise DataError(problems_report(errors, f"the {channel} data"))
        self._entries = sorted(entries, key=lambda entry: entry.name)

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

    def _entry(self, json_name: str, document: dict, image_rel: str, image_path: Path) -> ImageFile:
        image_name = f"{self._channel}/{image_rel}"
        width, height = rgb_image_size(image_name, image_path)
        claimed_width, claimed_height = _image_size(json_name, document)
        if (claimed_width, claimed_height) != (width, height):
            hint = " (EXIF orientation is not applied: sizes refer to the stored pixels)"
            raise DataError(
                f"{json_name}: image_size says {claimed_width}x{claimed_height} but {image_name} is {width}x{height}"
                + (hint if (claimed_width, claimed_height) == (height, width) else "")
            )
        objects = pixel_annotations(json_name, document["annotations"], width, height, self._num_classes)
        self._categories.add(json_name, document.get("categories"))
        return ImageFile(image_name, image_path, objects)


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


def rgb_image_size(where: str, image: bytes | Path) -> tuple[int, int]:
    """The width and height of an RGB JPEG or PNG (its bytes, or its file), read from its header
    only; any other image is refused, ``where`` naming it (image+JSON and manifest data)."""
    try:
        with Image.open(io.BytesIO(image) if isinstance(image, bytes) else image) as opened:
            image_format, mode, size = opened.format, opened.mode, opened.size
    except DECODE_ERRORS as error:
        raise DataError(f"{where}: does not decode as JPEG or PNG ({error})") from None
    if image_format not in IMAGE_FORMATS:
        raise DataError(f"{where}: is a {image_format} image; only JPEG and PNG images are supported")
    if mode != "RGB":
        raise DataError(f"{where}: {not_rgb_reason(mode)}")
    return size
