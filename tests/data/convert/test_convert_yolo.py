"""YOLO text labels: Ultralytics and Darknet layouts, names files, what is written, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from convert_helpers import read_error, read_format, write_image
from sagedet.data.convert.dataset import Options
from sagedet.data.convert.formats import convert


@pytest.fixture
def ultralytics(tmp_path):
    root = tmp_path / "yolo"
    write_image(root / "images" / "train" / "a.jpg", 100, 50)
    write_image(root / "images" / "train" / "b.png", 40, 40, "PNG")
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "train" / "a.txt").write_text("1 0.25 0.3 0.3 0.4\n\n0 0.5 0.5 1 1\n")
    (root / "classes.txt").write_text("cat\ndog\n")
    return root


def test_ultralytics_layout(ultralytics):
    dataset = read_format("yolo", ultralytics)
    assert dataset.class_names == {0: "cat", 1: "dog"}
    a, b = dataset.items
    assert (a.name, a.width, a.height, b.name) == ("train/a.jpg", 100, 50, "train/b.png")
    assert a.objects.labels.tolist() == [1, 0]
    np.testing.assert_allclose(a.objects.boxes, [[0.1, 0.1, 0.4, 0.5], [0.0, 0.0, 1.0, 1.0]], atol=1e-7)
    assert b.objects.labels.size == 0  # no .txt: no objects


def test_darknet_layout_with_obj_names(tmp_path):
    root = tmp_path / "darknet"
    write_image(root / "data" / "a.jpg", 100, 50)
    (root / "data" / "a.txt").write_text("2 0.25 0.3 0.3 0.4\n")
    (root / "obj.names").write_text("a\nb\nc\n")
    dataset = read_format("yolo", root)
    assert dataset.class_names == {0: "a", 1: "b", 2: "c"}
    assert dataset.items[0].name == "data/a.jpg" and dataset.items[0].objects.labels.tolist() == [2]


def test_without_names(ultralytics):
    (ultralytics / "classes.txt").unlink()
    dataset = read_format("yolo", ultralytics)
    assert dataset.class_names == {} and dataset.items[0].objects.labels.tolist() == [1, 0]


def test_what_is_written(ultralytics, tmp_path):
    convert("yolo", "yolo", ultralytics, tmp_path / "out", Options())
    assert (tmp_path / "out" / "labels" / "train" / "a.txt").read_text() == (
        "1 0.250000 0.300000 0.300000 0.400000\n0 0.500000 0.500000 1.000000 1.000000\n")
    assert (tmp_path / "out" / "labels" / "train" / "b.txt").read_text() == ""
    assert (tmp_path / "out" / "classes.txt").read_text() == "cat\ndog\n"
    assert (tmp_path / "out" / "images" / "train" / "b.png").read_bytes() == (
        ultralytics / "images" / "train" / "b.png").read_bytes()


@pytest.mark.parametrize("line, problem", [
    ("1 0.5 0.5 0.2", "'1 0.5 0.5 0.2' is not 'class_id center_x center_y width height'"),
    ("1 0.5 0.5 0.2 0.2 0.1", "is not 'class_id center_x center_y width height'"),
    ("dog 0.5 0.5 0.2 0.2", "is not 'class_id center_x center_y width height'"),
    ("2 0.5 0.5 0.2 0.2", "class_id 2; allowed: whole numbers from 0 to 1 (num_classes=2)"),
    ("0.5 0.5 0.5 0.2 0.2", "class_id 0.5"),
    ("1 0.95 0.5 0.2 0.2", "corners are normalized, within [0, 1]"),
    ("1 0.5 0.5 0 0.2", "needs xmax > xmin"),
])
def test_a_bad_line_names_the_file_and_line(ultralytics, line, problem):
    path = ultralytics / "labels" / "train" / "a.txt"
    path.write_text(f"0 0.5 0.5 0.2 0.2\n{line}\n")
    message = read_error("yolo", ultralytics)
    assert f"{path}: line 2: " in message and problem in message


def test_a_folder_without_images(tmp_path):
    (tmp_path / "images").mkdir()
    assert "holds no .jpg, .jpeg or .png images" in read_error("yolo", tmp_path)
    assert "is not a folder" in read_error("yolo", tmp_path / "missing")


@pytest.mark.parametrize("names, problem", [("cat\n\ndog\n", "line 2 is blank"),
                                            ("cat\ndog\ncat\n", "names 'cat' more than once")])
def test_a_bad_names_file(ultralytics, names, problem):
    (ultralytics / "classes.txt").write_text(names)
    assert problem in read_error("yolo", ultralytics)


def test_names_files_with_windows_line_ends(ultralytics):
    (ultralytics / "classes.txt").write_text("cat\r\ndog\r\n")
    assert read_format("yolo", ultralytics).class_names == {0: "cat", 1: "dog"}
