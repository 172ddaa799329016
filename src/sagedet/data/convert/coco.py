"""COCO object detection JSON ("instances"): one file for the whole data set::

    {"images": [{"id": 1, "file_name": "dog1.jpg", "width": 500, "height": 400}],
     "annotations": [{"id": 1, "image_id": 1, "category_id": 18, "bbox": [111, 134, 61, 128], "iscrowd": 0}],
     "categories": [{"id": 18, "name": "dog"}]}

``bbox`` is ``[x, y, width, height]`` in pixels, origin top-left. Category ids need not be
contiguous: class ids 0..n-1 follow the sorted category ids, and the names travel with them.
Annotations with ``iscrowd`` set (crowd regions, not single objects) are left out. The images are
``file_name`` relative to ``--images`` (default: the JSON's folder); images without annotations are
kept, with no objects (training accepts them, but they contribute no loss). Written with category
id = class id + 1 and the images copied beside the JSON.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from ...errors import DataError
from ..annotations import is_number, kind, pixel_annotations
from .dataset import (Dataset, Item, Options, claim, collect, copy_images, image_file_item, load_json, pixel_boxes,
                      pixel_number, relative_to, write_file)

SECTIONS = ("images", "annotations", "categories")


def read(src: Path, options: Options) -> Dataset:
    document = load_json(src)
    if not isinstance(document, dict) or not all(isinstance(document.get(key), list) for key in SECTIONS):
        raise DataError(f"{src}: a COCO file is a JSON object with the lists 'images', 'annotations' and "
                        "'categories'")
    categories = _categories(src, document["categories"])
    images = _images(src, document["images"])
    boxes, crowds = _annotations(src, document["annotations"], images, categories)
    root = options.images or src.parent
    class_ids = {category_id: class_id for class_id, category_id in enumerate(sorted(categories))}

    def item(image_id: int) -> Item:
        image = images[image_id]
        where = f"{src}: image id {image_id} ({image['file_name']})"
        annotations = [{"class_id": class_ids[category], "left": x, "top": y, "width": w, "height": h}
                       for category, (x, y, w, h) in boxes[image_id]]
        return image_file_item(where, root / image["file_name"], image["file_name"],
                               lambda width, height: pixel_annotations(where, annotations, width, height,
                                                                       len(categories)),
                               _claimed_size(image))

    items = collect(images, item, str(src))
    notes = [f"{src}: left out {crowds} crowd annotation(s) (iscrowd=1)"] if crowds else []
    return Dataset(items, {class_ids[i]: categories[i] for i in categories}, notes)


def _categories(src: Path, categories: list) -> dict[int, str]:
    """Category id → name."""
    names: dict[int, str] = {}
    for i, category in enumerate(categories):
        if not (isinstance(category, dict) and _is_id(category.get("id")) and isinstance(category.get("name"), str)):
            raise DataError(f"{src}: categories[{i}] must be an object with an integer 'id' and a string 'name', "
                            f"got {json.dumps(category)[:200]}")
        if category["id"] in names:
            raise DataError(f"{src}: categories[{i}]: category id {category['id']} appears twice")
        names[category["id"]] = category["name"]
    return names


def _images(src: Path, images: list) -> dict[int, dict]:
    """Image id → the image's entry."""
    found: dict[int, dict] = {}
    for i, image in enumerate(images):
        if not (isinstance(image, dict) and _is_id(image.get("id")) and isinstance(image.get("file_name"), str)):
            raise DataError(f"{src}: images[{i}] must be an object with an integer 'id' and a string 'file_name' "
                            "(and 'width', 'height')")
        if image["id"] in found:
            raise DataError(f"{src}: images[{i}]: image id {image['id']} appears twice")
        found[image["id"]] = image
    return found


def _annotations(src: Path, annotations: list, images: dict, categories: dict) -> tuple[dict[int, list], int]:
    """Image id → [(category id, bbox)], and the number of crowd annotations left out."""
    boxes: dict[int, list] = defaultdict(list)
    crowds = 0
    for i, annotation in enumerate(annotations):
        where = f"{src}: annotations[{i}]"
        if not isinstance(annotation, dict):
            raise DataError(f"{where} must be an object, got {kind(annotation)}")
        if annotation.get("iscrowd"):
            crowds += 1
            continue
        if annotation.get("image_id") not in images:
            raise DataError(f"{where}: image_id {annotation.get('image_id')!r} is not the id of any of 'images'")
        if annotation.get("category_id") not in categories:
            raise DataError(f"{where}: category_id {annotation.get('category_id')!r} is not the id of any of "
                            f"'categories' ({', '.join(map(str, sorted(categories)))})")
        bbox = annotation.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(is_number(value) for value in bbox)):
            raise DataError(f"{where}: 'bbox' must be [x, y, width, height] in pixels, got {bbox!r}")
        boxes[annotation["image_id"]].append((annotation["category_id"], bbox))
    return boxes, crowds


def _claimed_size(image: dict) -> tuple[Any, Any] | None:
    return (image.get("width"), image.get("height")) if "width" in image or "height" in image else None


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def write(dataset: Dataset, dst: Path, options: Options) -> list[Path]:
    claim(dst)
    paths = copy_images(dataset.items, dst.parent)
    images, annotations = [], []
    for image_id, (path, item) in enumerate(zip(paths, dataset.items), 1):
        images.append({"id": image_id, "file_name": relative_to(path, dst.parent), "width": item.width,
                       "height": item.height})
        for label, (xmin, ymin, xmax, ymax) in zip(item.objects.labels, pixel_boxes(item)):
            bbox = [pixel_number(xmin), pixel_number(ymin), pixel_number(xmax - xmin), pixel_number(ymax - ymin)]
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(label) + 1,
                                "bbox": bbox, "area": pixel_number(bbox[2] * bbox[3]), "iscrowd": 0,
                                "segmentation": []})
    categories = [{"id": i + 1, "name": name, "supercategory": ""} for i, name in enumerate(dataset.all_class_names())]
    write_file(dst, json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return [dst]
