"""Ground Truth augmented manifests: finding images by source-ref, label attributes, class maps,
source-refs written relative or under an S3 prefix, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from convert_helpers import read_error, read_format, write_image
from sagedet.data.convert.dataset import Options
from sagedet.data.convert.formats import convert

BOX = {"class_id": 1, "left": 10, "top": 5, "width": 30, "height": 20}


def line(ref="s3://bucket/jobs/images/a.jpg", annotations=(BOX,), attribute="boxes", size=(100, 50), class_map=None,
         **extra) -> dict:
    document = {"source-ref": ref,
                attribute: {"image_size": [{"width": size[0], "height": size[1], "depth": 3}],
                            "annotations": list(annotations)}, **extra}
    if class_map is not None:
        document[f"{attribute}-metadata"] = {"class-map": class_map, "type": "groundtruth/object-detection"}
    return document


def write_manifest(path, *lines) -> object:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((item if isinstance(item, str) else json.dumps(item)) + "\n" for item in lines))
    return path


@pytest.fixture
def images(tmp_path):
    write_image(tmp_path / "local" / "images" / "a.jpg", 100, 50)
    write_image(tmp_path / "local" / "b.jpg", 40, 40)
    return tmp_path / "local"


def test_source_refs_are_found_by_the_tail_of_their_path(tmp_path, images):
    path = write_manifest(tmp_path / "m" / "train.manifest",
                          line(class_map={"0": "cat", "1": "dog"}), "",
                          line("s3://other/b.jpg", annotations=[], size=(40, 40)))
    dataset = read_format("manifest", path, images=images)
    assert dataset.class_names == {0: "cat", 1: "dog"}
    a, b = dataset.items
    assert (a.name, a.width, a.height, b.name) == ("images/a.jpg", 100, 50, "b.jpg")
    np.testing.assert_allclose(a.objects.boxes, [[0.1, 0.1, 0.4, 0.5]], atol=1e-7)
    assert a.objects.labels.tolist() == [1] and b.objects.labels.size == 0


def test_a_label_attribute_chosen_among_several(tmp_path, images):
    document = line(**{"other": {"annotations": [], "image_size": []}})
    path = write_manifest(tmp_path / "m" / "x.manifest", document)
    assert "several attributes (boxes, other)" in read_error("manifest", path, images=images)
    assert read_format("manifest", path, images=images, label_attribute="boxes").items[0].objects.labels.tolist() == [1]
    assert "has no label attribute 'nope'" in read_error("manifest", path, images=images, label_attribute="nope")


@pytest.mark.parametrize("prefix, expected", [(None, "images/a.jpg"),
                                              ("s3://bucket/data/", "s3://bucket/data/images/a.jpg")])
def test_what_is_written(tmp_path, images, prefix, expected):
    source = write_manifest(tmp_path / "m" / "x.manifest", line(class_map={"1": "dog"}))
    dst = tmp_path / "out" / "train.manifest"
    convert("manifest", "manifest", source, dst, Options(images=images, s3_prefix=prefix, label_attribute="boxes"))
    (written,) = [json.loads(text) for text in dst.read_text().splitlines()]
    assert written == {"source-ref": expected,
                       "boxes": {"image_size": [{"width": 100, "height": 50, "depth": 3}], "annotations": [BOX]},
                       "boxes-metadata": {"class-map": {"0": "0", "1": "dog"}, "type": "groundtruth/object-detection",
                                          "human-annotated": "yes"}}
    assert (tmp_path / "out" / "images" / "a.jpg").read_bytes() == (images / "images" / "a.jpg").read_bytes()


def test_the_default_label_attribute_written_is_bounding_box(tmp_path, images):
    source = write_manifest(tmp_path / "m" / "x.manifest", line())
    convert("manifest", "manifest", source, tmp_path / "out.manifest", Options(images=images))
    assert "bounding-box" in json.loads((tmp_path / "out.manifest").read_text())


@pytest.mark.parametrize("text, problem", [
    ("{not json", "is not valid JSON"),
    (json.dumps([1]), "must be a JSON object with 'source-ref'"),
    (json.dumps({"boxes": {"annotations": []}}), "must be a JSON object with 'source-ref'"),
    (json.dumps({"source-ref": "s3://b/images/a.jpg"}), "no attribute with 'annotations'"),
    (json.dumps(line("s3://bucket/c.jpg")), "image 's3://bucket/c.jpg' not found under"),
    (json.dumps(line(size=(99, 50))), "image_size says 99x50 but the image is 100x50"),
    (json.dumps(line(annotations=[{**BOX, "left": 95}])), "'boxes': annotations[0]: box left=95"),
    (json.dumps(line(annotations=[{**BOX, "class_id": "1"}])), "'class_id' must be a number, got '1'"),
    (json.dumps(line(class_map={"0": 5})), "class-map['0']: the name of class 0 must be a string"),
])
def test_a_bad_line_names_the_manifest_and_line(tmp_path, images, text, problem):
    path = write_manifest(tmp_path / "m" / "x.manifest", line(), text)
    message = read_error("manifest", path, images=images)
    assert f"{path}: line 2" in message and problem in message


def test_class_maps_that_disagree(tmp_path, images):
    path = write_manifest(tmp_path / "m" / "x.manifest", line(class_map={"1": "dog"}), line(class_map={"1": "cat"}))
    assert "names class_id 1 'cat', but" in read_error("manifest", path, images=images)


def test_an_empty_manifest(tmp_path):
    path = write_manifest(tmp_path / "x.manifest", "")
    assert "holds no lines" in read_error("manifest", path)
