"""SageMaker's pixel annotations → :class:`~sagedet.data.sample.Objects`, shared by the image+JSON
files and Ground Truth's augmented manifests, which hold the same ``annotations`` list::

    "annotations": [{"class_id": 0, "left": 111, "top": 134, "width": 61, "height": 128}]

Boxes are in pixels of the stored image, origin top-left; a box may stick out of the image by up to
1 pixel (rounding) and is clipped. Class ids are integers in [0, num_classes). Errors name the file
or record (``where``) and the annotation's index.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import DataError
from .sample import Objects

BOX_KEYS = ("class_id", "left", "top", "width", "height")
TOLERANCE = 1.0
"""Pixels a box may stick out of its image before it counts as outside."""


def pixel_annotations(where: str, annotations: Any, width: int, height: int, num_classes: int) -> Objects:
    """The objects of a ``width`` × ``height`` image, corners normalized to [0, 1] and clipped."""
    if not isinstance(annotations, list):
        raise DataError(f"{where}: 'annotations' must be a list of objects, got {kind(annotations)}")
    boxes = np.zeros((len(annotations), 4), dtype=np.float32)
    labels = np.zeros(len(annotations), dtype=np.int64)
    for i, annotation in enumerate(annotations):
        labels[i], boxes[i] = _box(f"{where}: annotations[{i}]", annotation, width, height, num_classes)
    return Objects(boxes, labels)


def class_id(where: str, value: Any, num_classes: int) -> int:
    if not (is_number(value) and float(value).is_integer() and 0 <= value < num_classes):
        raise DataError(f"{where}: class_id {value!r} is not an integer in [0, {num_classes}) "
                        f"(num_classes is {num_classes})")
    return int(value)


class ClassNames:
    """Class names gathered from many files; a class named differently in two files is an error."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.names: dict[int, str] = {}
        self._first: dict[int, str] = {}

    def add_one(self, where: str, class_id_value: Any, name: Any, origin: str | None = None) -> None:
        """Name one class; ``origin`` (default ``where``) is how a later conflict refers to this one."""
        if not isinstance(name, str):
            raise DataError(f"{where}: the name of class {class_id_value!r} must be a string, got {kind(name)}")
        number = class_id(where, class_id_value, self.num_classes)
        known = self.names.setdefault(number, name)
        first = self._first.setdefault(number, origin or where)
        if known != name:
            raise DataError(f"{where} names class_id {number} {name!r}, but {first} names it {known!r}")

    def add(self, where: str, categories: Any) -> None:
        """An image+JSON ``categories`` list: ``[{"class_id": 0, "name": "dog"}]`` (None: nothing)."""
        if categories is None:
            return
        if not isinstance(categories, list):
            raise DataError(f"{where}: 'categories' must be a list of objects, got {kind(categories)}")
        for i, category in enumerate(categories):
            item = f"{where}: categories[{i}]"
            if not (isinstance(category, dict) and isinstance(category.get("name"), str) and "class_id" in category):
                raise DataError(f"{item} must be an object with an integer 'class_id' and a string 'name'")
            self.add_one(item, category["class_id"], category["name"], where)

    def add_class_map(self, where: str, class_map: Any) -> None:
        """A Ground Truth ``class-map``: ``{"0": "dog"}``."""
        if not isinstance(class_map, dict):
            raise DataError(f"{where}: 'class-map' must be an object mapping class ids to names, got {kind(class_map)}")
        for key, name in class_map.items():
            try:
                number: Any = int(key)
            except ValueError:
                number = key
            self.add_one(f"{where}: class-map[{key!r}]", number, name, where)


def _box(where: str, annotation: Any, width: int, height: int, num_classes: int) -> tuple[int, list[float]]:
    """The class id and the box normalized to [0, 1] (xmin, ymin, xmax, ymax), clipped to the image."""
    if not isinstance(annotation, dict):
        raise DataError(f"{where} must be an object with keys {', '.join(BOX_KEYS)}, got {kind(annotation)}")
    for key in BOX_KEYS:
        if key not in annotation:
            raise DataError(f"{where} lacks the required key '{key}' (keys: {', '.join(BOX_KEYS)})")
        if not is_number(annotation[key]):
            raise DataError(f"{where}: '{key}' must be a number, got {annotation[key]!r}")
    number = class_id(where, annotation["class_id"], num_classes)
    left, top, box_width, box_height = (float(annotation[key]) for key in BOX_KEYS[1:])
    if box_width <= 0 or box_height <= 0:
        raise DataError(f"{where}: width and height must be > 0, got width {box_width:g}, height {box_height:g}")
    xmin, xmax = min(max(left, 0.0), width), min(left + box_width, width)
    ymin, ymax = min(max(top, 0.0), height), min(top + box_height, height)
    outside = (left < -TOLERANCE or top < -TOLERANCE
               or left + box_width > width + TOLERANCE or top + box_height > height + TOLERANCE)
    if outside or xmax <= xmin or ymax <= ymin:
        raise DataError(
            f"{where}: box left={left:g}, top={top:g}, width={box_width:g}, height={box_height:g} lies outside "
            f"the {width}x{height} image (boxes must lie within it, give or take 1 pixel)")
    return number, [xmin / width, ymin / height, xmax / width, ymax / height]


def is_number(value: Any) -> bool:
    """An int or float (not a bool), finite and within float range."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) < 1e300


def kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string"}.get(type(value), repr(value))
