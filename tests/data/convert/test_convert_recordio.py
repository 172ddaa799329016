"""RecordIO (.rec with .idx, .lst, .classes.json) and image+JSON as conversion formats."""

from __future__ import annotations

import json

import numpy as np
import pytest

from convert_helpers import encoded, read_error, read_format, write_image
from sagedet.data.convert.dataset import Options
from sagedet.data.convert.formats import convert
from sagedet.data.recordio import RecordWriter, pack, read_index, scan_offsets
from sagedet.data.inspect import inspect_records
from sagedet.errors import DataError

JPEG, PNG = encoded(100, 50), encoded(40, 40, "PNG")


def write_rec(path, *records):
    """Records (label, image bytes, header id) written by our writer (tested against dmlc-core's bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        writer = RecordWriter(out)
        return [writer.write(pack(label, image, id=id)) for label, image, id in records]


def test_reads_any_label_layout_and_names_images_by_position_and_format(tmp_path):
    path = tmp_path / "data.rec"
    write_rec(path, ([4, 5, 100, 50, 1, 0.1, 0.1, 0.4, 0.5], JPEG, 0), ([2, 6, 0, 0.5, 0, 1, 1, 1], PNG, 1),
              ([2, 5, 0, 0.1, 0.1, 0.2, 0.2, -1, -1, -1, -1, -1], JPEG, 2))
    dataset = read_format("recordio", path)
    assert [item.name for item in dataset.items] == ["data_000000.jpg", "data_000001.png", "data_000002.jpg"]
    assert [(item.width, item.height) for item in dataset.items] == [(100, 50), (40, 40), (100, 50)]
    assert dataset.class_names == {}
    assert [item.objects.labels.tolist() for item in dataset.items] == [[1], [0], [0]]
    np.testing.assert_allclose(dataset.items[1].objects.boxes, [[0.5, 0, 1, 1]])
    assert [item.read() for item in dataset.items] == [JPEG, PNG, JPEG]


def test_lst_names_the_images_by_header_id_and_classes_json_the_classes(tmp_path):
    path = tmp_path / "data.rec"
    write_rec(path, ([2, 5], JPEG, 5), ([2, 5], PNG, 3))
    (tmp_path / "data.lst").write_text("3\t2\t5\tdir/b.png\n5\t2.0\t5.0\ta.jpg\n")
    (tmp_path / "classes.json").write_text(json.dumps([{"class_id": 0, "name": "cat"}]))
    dataset = read_format("recordio", path)
    assert [item.name for item in dataset.items] == ["a.jpg", "dir/b.png"]
    assert dataset.class_names == {0: "cat"}
    (tmp_path / "data.classes.json").write_text(json.dumps([{"class_id": 0, "name": "dog"}]))
    assert read_format("recordio", path).class_names == {0: "dog"}
    (tmp_path / "names.txt").write_text("bird\n")
    assert read_format("recordio", path, classes=tmp_path / "names.txt").class_names == {0: "bird"}


def test_what_is_written(tmp_path):
    write_image(tmp_path / "in" / "images" / "a.jpg", 100, 50)
    write_image(tmp_path / "in" / "b.png", 40, 40, "PNG")
    (tmp_path / "in" / "labels").mkdir()
    (tmp_path / "in" / "labels" / "a.txt").write_text("1 0.25 0.3 0.3 0.4\n")
    (tmp_path / "in" / "classes.txt").write_text("cat\ndog\n")
    dst = tmp_path / "out" / "train.rec"
    convert("yolo", "recordio", tmp_path / "in", dst, Options())

    entries = list(inspect_records(dst))
    assert [(e["id"], e["format"], e["width"], e["height"]) for e in entries] == [(0, "JPEG", 100, 50)]
    np.testing.assert_allclose(entries[0]["label"], [2, 5, 1, 0.1, 0.1, 0.4, 0.5], atol=1e-7)
    assert read_index(dst.with_suffix(".idx")) == [(0, 0)] == list(enumerate(scan_offsets(dst)))
    assert dst.with_suffix(".lst").read_text() == "0\t2.0\t5.0\t1.0\t0.1\t0.1\t0.4\t0.5\ta.jpg\n"
    assert json.loads(dst.with_suffix(".classes.json").read_text()) == [{"class_id": 0, "name": "cat"},
                                                                         {"class_id": 1, "name": "dog"}]
    assert read_format("recordio", dst).items[0].read() == (tmp_path / "in" / "images" / "a.jpg").read_bytes()


def test_bad_labels_are_reported_together_naming_record_and_offset(tmp_path):
    path = tmp_path / "data.rec"
    offsets = write_rec(path, ([2, 5], JPEG, 0), (3.0, JPEG, 1), ([2, 5, 0, 0.5, 0.1, 0.2, 0.2], JPEG, 2),
                        ([2, 5], b"not an image", 3))
    message = read_error("recordio", path)
    assert message.startswith(f"3 problem(s) in {path}:")
    assert f"{path}: record 1 (byte offset {offsets[1]}): has a scalar label (3)" in message
    assert f"{path}: record 2 (byte offset {offsets[2]}): object 0 has box" in message
    assert f"{path}: record 3 (byte offset {offsets[3]}): the image does not decode" in message


def test_broken_framing_stops_the_reading(tmp_path):
    path = tmp_path / "data.rec"
    offsets = write_rec(path, ([2, 5], JPEG, 0), ([2, 5], JPEG, 1))
    path.write_bytes(path.read_bytes()[:-7])
    message = read_error("recordio", path)
    assert f"{path}: record 1 (byte offset {offsets[1]}" in message and "truncated" in message
    assert "is not a file" in read_error("recordio", tmp_path / "missing.rec")


@pytest.mark.parametrize("side, text, problem", [
    ("data.lst", "zero\t2\t5\ta.jpg\n",
     "line 1: 'zero\\t2\\t5\\ta.jpg' is not 'index<TAB>label values...<TAB>image path'"),
    ("classes.json", "[{\"id\": 0}]", "categories[0] must be an object with an integer 'class_id' and a string 'name'"),
    ("classes.json", "{", "is not valid JSON"),
])
def test_bad_side_files(tmp_path, side, text, problem):
    path = tmp_path / "data.rec"
    write_rec(path, ([2, 5], JPEG, 0))
    (tmp_path / side).write_text(text)
    message = read_error("recordio", path)
    assert str(tmp_path / side) in message and problem in message


def test_image_json_from_another_annotation_folder_and_without_categories(tmp_path):
    write_image(tmp_path / "imgs" / "a.jpg", 100, 50)
    (tmp_path / "anns").mkdir()
    document = {"image_size": [{"width": 100, "height": 50, "depth": 3}],
                "annotations": [{"class_id": 0, "left": 10, "top": 5, "width": 30, "height": 20}]}
    (tmp_path / "anns" / "a.json").write_text(json.dumps(document))
    dataset = read_format("imagejson", tmp_path / "imgs", annotations=tmp_path / "anns")
    assert dataset.class_names == {} and dataset.items[0].objects.labels.tolist() == [0]
    convert("imagejson", "imagejson", tmp_path / "imgs", tmp_path / "out" / "train",
            Options(annotations=tmp_path / "anns"))
    written = json.loads((tmp_path / "out" / "train_annotation" / "a.json").read_text())
    assert written == {"file": "a.jpg", **document}


def test_image_json_errors_are_the_training_sources(tmp_path):
    write_image(tmp_path / "train" / "a.jpg", 100, 50)
    (tmp_path / "train_annotation").mkdir()
    (tmp_path / "train_annotation" / "a.json").write_text(json.dumps({"annotations": []}))
    with pytest.raises(DataError, match=r"train_annotation/a.json: lacks the required key 'image_size'"):
        read_format("imagejson", tmp_path / "train")
