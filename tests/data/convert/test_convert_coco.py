"""COCO instances JSON: category ids to class ids, pixel boxes, crowds, what is written, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from convert_helpers import read_error, read_format, write_image
from sagedet.data.convert.dataset import Options
from sagedet.data.convert.formats import convert

CATEGORIES = [{"id": 18, "name": "dog"}, {"id": 3, "name": "car"}, {"id": 7, "name": "bus"}]


def coco_file(tmp_path, images=None, annotations=None, categories=None, **extra):
    document = {
        "images": images if images is not None else [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 50},
                                                      {"id": 2, "file_name": "sub/b.jpg", "width": 40, "height": 40}],
        "annotations": annotations if annotations is not None else [
            {"id": 1, "image_id": 1, "category_id": 18, "bbox": [10, 5, 30, 20], "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 3, "bbox": [60.5, 0, 39.5, 50]},
            {"id": 3, "image_id": 1, "category_id": 7, "bbox": [0, 0, 100, 50], "iscrowd": 1}],
        "categories": categories if categories is not None else CATEGORIES, **extra}
    path = tmp_path / "coco" / "instances.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))
    write_image(tmp_path / "coco" / "a.jpg", 100, 50)
    write_image(tmp_path / "coco" / "sub" / "b.jpg", 40, 40)
    return path


def test_sorted_category_ids_become_class_ids_and_bboxes_are_normalized(tmp_path):
    dataset = read_format("coco", coco_file(tmp_path))
    assert dataset.class_names == {0: "car", 1: "bus", 2: "dog"}
    first, second = dataset.items
    assert (first.name, first.width, first.height) == ("a.jpg", 100, 50)
    assert first.objects.labels.tolist() == [2, 0]  # the crowd annotation is left out
    np.testing.assert_allclose(first.objects.boxes, [[0.1, 0.1, 0.4, 0.5], [0.605, 0.0, 1.0, 1.0]], atol=1e-7)
    assert second.name == "sub/b.jpg" and second.objects.labels.size == 0
    assert dataset.notes == [f"{tmp_path / 'coco' / 'instances.json'}: left out 1 crowd annotation(s) (iscrowd=1)"]


def test_images_elsewhere(tmp_path):
    path = coco_file(tmp_path)
    (tmp_path / "coco" / "a.jpg").rename(tmp_path / "a.jpg")
    (tmp_path / "coco" / "sub").rename(tmp_path / "sub")
    assert len(read_format("coco", path, images=tmp_path).items) == 2
    assert "image 'a.jpg' not found" in read_error("coco", path)


def test_what_is_written(tmp_path):
    convert("coco", "coco", coco_file(tmp_path), tmp_path / "out" / "coco.json", Options())
    written = json.loads((tmp_path / "out" / "coco.json").read_text())
    assert written["categories"] == [{"id": 1, "name": "car", "supercategory": ""},
                                     {"id": 2, "name": "bus", "supercategory": ""},
                                     {"id": 3, "name": "dog", "supercategory": ""}]
    assert written["images"] == [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 50},
                                 {"id": 2, "file_name": "sub/b.jpg", "width": 40, "height": 40}]
    assert [(a["image_id"], a["category_id"], a["bbox"], a["area"], a["iscrowd"]) for a in written["annotations"]] == [
        (1, 3, [10, 5, 30, 20], 600, 0), (1, 1, [60.5, 0, 39.5, 50], 1975, 0)]
    assert (tmp_path / "out" / "sub" / "b.jpg").read_bytes() == (tmp_path / "coco" / "sub" / "b.jpg").read_bytes()


@pytest.mark.parametrize("change, problem", [
    ({"images": {}}, "a COCO file is a JSON object with the lists 'images', 'annotations' and 'categories'"),
    ({"categories": [{"id": 1}]}, "categories[0] must be an object with an integer 'id' and a string 'name'"),
    ({"categories": [{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]}, "categories[1]: category id 1 appears twice"),
    ({"images": [{"id": 1, "file_name": "a.jpg"}, {"id": 1, "file_name": "a.jpg"}]},
     "images[1]: image id 1 appears twice"),
    ({"images": [{"id": "1", "file_name": "a.jpg"}]}, "images[0] must be an object with an integer 'id'"),
    ({"images": [{"id": 1, "file_name": "a.jpg", "width": 100}]},
     "image id 1 (a.jpg): the annotation says the image is 100xNone but"),
    ({"annotations": [{"image_id": 9, "category_id": 3, "bbox": [0, 0, 1, 1]}]},
     "annotations[0]: image_id 9 is not the id of any of 'images'"),
    ({"annotations": [{"image_id": 1, "category_id": 4, "bbox": [0, 0, 1, 1]}]},
     "annotations[0]: category_id 4 is not the id of any of 'categories' (3, 7, 18)"),
    ({"annotations": [{"image_id": 1, "category_id": 3, "bbox": [0, 0, 1]}]},
     "annotations[0]: 'bbox' must be [x, y, width, height] in pixels, got [0, 0, 1]"),
    ({"annotations": [{"image_id": 1, "category_id": 3, "bbox": [0, 0, 1, 1]}, "x"]},
     "annotations[1] must be an object"),
])
def test_bad_structure_names_the_entry(tmp_path, change, problem):
    path = coco_file(tmp_path, **change)
    message = read_error("coco", path)
    assert f"{path}: " in message and problem in message


def test_bad_images_and_boxes_are_reported_together(tmp_path):
    path = coco_file(tmp_path, images=[{"id": 1, "file_name": "a.jpg", "width": 100, "height": 50},
                                       {"id": 2, "file_name": "sub/b.jpg", "width": 41, "height": 40},
                                       {"id": 3, "file_name": "missing.jpg", "width": 10, "height": 10}],
                     annotations=[{"image_id": 1, "category_id": 3, "bbox": [90, 0, 30, 10]},
                                  {"image_id": 1, "category_id": 3, "bbox": [0, 0, 0, 10]}])
    message = read_error("coco", path)
    assert message.startswith(f"3 problem(s) in {path}:")
    assert f"{path}: image id 1 (a.jpg): annotations[0]: box left=90, top=0, width=30, height=10 lies outside the " \
           "100x50 image" in message
    assert f"{path}: image id 2 (sub/b.jpg): the annotation says the image is 41x40 but" in message
    assert f"{path}: image id 3 (missing.jpg): image 'missing.jpg' not found" in message


def test_not_json(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("{nope")
    assert read_error("coco", path).startswith(f"{path}: is not valid JSON")
