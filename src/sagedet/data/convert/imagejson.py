"""SageMaker's image+JSON layout: an image folder (the ``train`` channel) and an annotation folder
(``train_annotation``, by default the image folder's sibling named ``<image folder>_annotation``)
holding one JSON per image::

    {"file": "images/dog1.jpg", "image_size": [{"width": 500, "height": 400, "depth": 3}],
     "annotations": [{"class_id": 0, "left": 111, "top": 134, "width": 61, "height": 128}],
     "categories": [{"class_id": 0, "name": "dog"}]}

Read with the training source itself (:class:`~sagedet.data.imagejson.ImageJsonSource`), so a
converted data set is checked exactly as training will check it. Written as ``DST/<name>`` and
``DST_annotation/<name without suffix>.json`` with ``file``, ``image_size``, ``annotations`` (pixels)
and ``categories`` (when the data set names its classes).
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

from ..imagejson import ImageJsonSource
from .dataset import (ANY_CLASS_ID, Dataset, Item, Options, categories, claim, image_header, image_size_list,
                      pixel_annotation_list, read_class_list, safe_name, write_per_image)


def annotation_dir(image_dir: Path, options: Options | None = None) -> Path:
    """Where the annotation JSONs of ``image_dir`` are: ``--annotations``, else the sibling folder
    ``<image folder>_annotation``."""
    if options is not None and options.annotations is not None:
        return options.annotations
    return image_dir.with_name(f"{image_dir.name}_annotation")


def read(src: Path, options: Options) -> Dataset:
    num_classes = len(read_class_list(options.classes)) if options.classes else ANY_CLASS_ID
    channel = src.as_posix()
    source = ImageJsonSource(src, annotation_dir(src, options), num_classes, channel)
    items = []
    for index in range(len(source)):
        name = source.name(index).removeprefix(f"{channel}/")
        path = src / name
        _, width, height = image_header(source.name(index), path)
        items.append(Item(name, width, height, source.read(index).objects, path.read_bytes))
    return Dataset(items, dict(sorted(source.class_names.items())))


def write(dataset: Dataset, dst: Path, options: Options) -> list[Path]:
    annotations = annotation_dir(dst)
    claim(dst, annotations)
    write_per_image(dataset.items, dst, annotations, ".json", partial(_document, dataset))
    return [dst, annotations]


def _document(dataset: Dataset, item: Item) -> str:
    """The annotation JSON of an item."""
    document = {"file": safe_name(item.name), "image_size": image_size_list(item),
                "annotations": pixel_annotation_list(item)}
    if dataset.class_names:
        document["categories"] = categories(dataset)
    return json.dumps(document, indent=1)
