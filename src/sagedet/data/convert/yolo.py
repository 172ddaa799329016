"""YOLO (Darknet / Ultralytics) text labels: one ``.txt`` per image, one object per line::

    0 0.283 0.495 0.122 0.320

``class_id center_x center_y width height``, normalized to [0, 1] by the image's width and height.
Read: the images under ``SRC/images`` with their labels at the same relative path under
``SRC/labels`` (Ultralytics), or, without an ``images`` folder, the images anywhere under ``SRC`` with
each ``.txt`` beside its image (Darknet); an image without a ``.txt`` has no objects. Class names:
``--classes``, else ``SRC/classes.txt`` or ``SRC/obj.names`` (one name per line, id = line number - 1).
Written: ``DST/images/<name>``, ``DST/labels/<name>.txt`` and ``DST/classes.txt``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import DataError
from ..detection_label import parse_detection_label
from ..sample import Objects
from ..textfile import read_text
from .dataset import (ANY_CLASS_ID, Dataset, Item, Options, claim, collect, find_images, image_file_item,
                      read_class_list, write_class_list, write_per_image)

NAME_FILES = ("classes.txt", "obj.names")
LABEL_TEXT = "a YOLO label file ('class_id center_x center_y width height' per line)"


def read(src: Path, options: Options) -> Dataset:
    if not src.is_dir():
        raise DataError(f"{src} is not a folder (a YOLO data set is a folder of images and .txt labels)")
    ultralytics = (src / "images").is_dir()
    images_root = src / "images" if ultralytics else src
    images = find_images(images_root)
    if not images:
        raise DataError(f"{images_root} holds no .jpg, .jpeg or .png images")
    name_file = options.classes or next((src / name for name in NAME_FILES if (src / name).is_file()), None)
    names = read_class_list(name_file) if name_file else {}
    num_classes = len(names) if names else ANY_CLASS_ID

    def item(image: Path) -> Item:
        relative = image.relative_to(images_root)
        labels = (src / "labels" / relative if ultralytics else image).with_suffix(".txt")
        return image_file_item(str(image), image, relative.as_posix(),
                               lambda width, height: _objects(labels, num_classes))

    return Dataset(collect(images, item, str(src)), names)


def _objects(path: Path, num_classes: int) -> Objects:
    """The objects of one label file (none when there is no file)."""
    rows = []
    text = read_text(path, LABEL_TEXT) if path.is_file() else ""
    lines = text.splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}: line {number}"
        fields = line.split()
        try:
            class_id, cx, cy, w, h = (float(field) for field in fields)
        except ValueError:
            raise DataError(f"{where}: {line.strip()!r} is not 'class_id center_x center_y width height' "
                            "(5 numbers, the last 4 normalized to [0, 1])") from None
        label = np.array([2, 5, class_id, cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
        rows.append(parse_detection_label(label, where, num_classes))
    if not rows:
        return Objects(np.zeros((0, 4), np.float32), np.zeros(0, np.int64))
    return Objects(np.concatenate([row.boxes for row in rows]), np.concatenate([row.labels for row in rows]))


def write(dataset: Dataset, dst: Path, options: Options) -> list[Path]:
    claim(dst)
    write_per_image(dataset.items, dst / "images", dst / "labels", ".txt", _lines)
    write_class_list(dst / "classes.txt", dataset)
    return [dst]


def _lines(item: Item) -> str:
    """The label file of an item: ``class_id center_x center_y width height`` per object."""
    lines = []
    for label, (xmin, ymin, xmax, ymax) in zip(item.objects.labels, item.objects.boxes.astype(np.float64)):
        values = ((xmin + xmax) / 2, (ymin + ymax) / 2, xmax - xmin, ymax - ymin)
        lines.append(f"{int(label)} " + " ".join(f"{value:.6f}" for value in values) + "\n")
    return "".join(lines)
