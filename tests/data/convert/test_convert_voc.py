"""Pascal VOC XML: 1-based inclusive corners, class lists, what is written, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from convert_helpers import read_error, read_format, write_image
from sagedet.data.convert.dataset import Options
from sagedet.data.convert.formats import convert


def voc_xml(filename="a.jpg", objects=(("dog", (11, 6, 40, 25)),), size=(100, 50)) -> str:
    size_xml = "" if size is None else (f"<size><width>{size[0]}</width><height>{size[1]}</height>"
                                        "<depth>3</depth></size>")
    objects_xml = "".join(
        f"<object><name>{name}</name><difficult>0</difficult><bndbox><xmin>{box[0]}</xmin><ymin>{box[1]}</ymin>"
        f"<xmax>{box[2]}</xmax><ymax>{box[3]}</ymax></bndbox></object>" for name, box in objects)
    return f"<annotation><folder>VOC2007</folder><filename>{filename}</filename>{size_xml}{objects_xml}</annotation>"


@pytest.fixture
def voc(tmp_path):
    root = tmp_path / "VOC"
    (root / "Annotations").mkdir(parents=True)
    write_image(root / "JPEGImages" / "a.jpg", 100, 50)
    write_image(root / "JPEGImages" / "b.jpg", 40, 40)
    (root / "Annotations" / "a.xml").write_text(voc_xml(objects=[("dog", (11, 6, 40, 25)), ("cat", (1, 1, 100, 50))]))
    (root / "Annotations" / "b.xml").write_text(voc_xml("b.jpg", objects=[], size=None))
    return root


def test_corners_are_1_based_and_inclusive(voc):
    dataset = read_format("voc", voc)
    assert dataset.class_names == {0: "cat", 1: "dog"}  # sorted names, without a class list
    assert "class ids from the sorted class names" in dataset.notes[0]
    a, b = dataset.items
    assert (a.name, a.width, a.height) == ("a.jpg", 100, 50)
    assert a.objects.labels.tolist() == [1, 0]
    # pixels 11..40 (1-based, inclusive) are 10..40 from the top-left corner
    np.testing.assert_allclose(a.objects.boxes, [[0.1, 0.1, 0.4, 0.5], [0.0, 0.0, 1.0, 1.0]], atol=1e-7)
    assert b.objects.labels.size == 0 and (b.width, b.height) == (40, 40)


def test_a_class_list_sets_the_ids(voc, tmp_path):
    (voc / "classes.txt").write_text("dog\ncat\nbird\n")
    dataset = read_format("voc", voc)
    assert dataset.class_names == {0: "dog", 1: "cat", 2: "bird"} and dataset.notes == []
    assert dataset.items[0].objects.labels.tolist() == [0, 1]
    (tmp_path / "mine.txt").write_text("bird\ncat\ndog\n")
    assert read_format("voc", voc, classes=tmp_path / "mine.txt").items[0].objects.labels.tolist() == [2, 1]


def test_an_object_not_in_the_class_list(voc):
    (voc / "classes.txt").write_text("dog\nbird\n")
    message = read_error("voc", voc)
    assert f"{voc / 'Annotations' / 'a.xml'}: object 1 is a 'cat', which is not in the class list" in message
    assert "(dog, bird)" in message


def test_what_is_written(voc, tmp_path):
    convert("voc", "voc", voc, tmp_path / "out", Options())
    xml = (tmp_path / "out" / "Annotations" / "a.xml").read_text()
    assert "<filename>a.jpg</filename>" in xml and "<width>100</width>" in xml and "<height>50</height>" in xml
    assert "<name>dog</name>" in xml and "<xmin>11</xmin>" in xml and "<ymin>6</ymin>" in xml
    assert "<xmax>40</xmax>" in xml and "<ymax>25</ymax>" in xml
    assert (tmp_path / "out" / "classes.txt").read_text() == "cat\ndog\n"
    assert (tmp_path / "out" / "JPEGImages" / "b.jpg").read_bytes() == (voc / "JPEGImages" / "b.jpg").read_bytes()


def test_fractional_pixels_are_written_rounded_within_a_pixel(tmp_path):
    root = tmp_path / "in"
    write_image(root / "images" / "a.jpg", 100, 50)
    (root / "labels").mkdir()
    (root / "labels" / "a.txt").write_text("0 0.5 0.5 0.333 0.777\n0 0.5 0.5 0.001 0.5\n")
    convert("yolo", "voc", root, tmp_path / "voc", Options())
    before, after = read_format("yolo", root), read_format("voc", tmp_path / "voc")
    np.testing.assert_allclose(after.items[0].objects.boxes * [100, 50, 100, 50],
                               before.items[0].objects.boxes * [100, 50, 100, 50], atol=1.0)


@pytest.mark.parametrize("xml, problem", [
    ("<annotation><filename>a.jpg", "is not a readable XML file"),
    ("<doc/>", "the root element is <doc>, a VOC annotation's is <annotation>"),
    (voc_xml("  "), "<annotation> lacks <filename>"),
    (voc_xml().replace("<name>dog</name>", ""), "<object> lacks <name>"),
    (voc_xml().replace("<xmax>40</xmax>", "<xmax>forty</xmax>"), "<object> 0: <xmax> is 'forty', not a number"),
    (voc_xml().replace("<bndbox>", "<box>").replace("</bndbox>", "</box>"), "<object> 0 has no <bndbox>"),
    (voc_xml(size=(100.5, 50)), "<size><width> is 100.5, not a whole number of pixels"),
    (voc_xml(size=(99, 50)), "the annotation says the image is 99x50 but"),
    (voc_xml(objects=[("dog", (11, 6, 102, 25))]), "annotations[0]: box left=10, top=5, width=92, height=20 lies "
                                                   "outside the 100x50 image"),
    (voc_xml(objects=[("dog", (11, 6, 9, 25))]), "width and height must be > 0"),
    (voc_xml("c.jpg"), "image 'c.jpg' not found"),
])
def test_bad_xml_names_the_file(voc, xml, problem):
    path = voc / "Annotations" / "a.xml"
    path.write_text(xml)
    message = read_error("voc", voc)
    assert f"{path}: " in message and problem in message


def test_a_folder_without_xml(tmp_path):
    (tmp_path / "empty").mkdir()
    assert "holds no .xml files" in read_error("voc", tmp_path / "empty")


def test_class_ids_survive_without_names(tmp_path):
    """Unnamed classes are written by number, and classes.txt keeps "10" after "9" (not after "1")."""
    root = tmp_path / "yolo"
    write_image(root / "images" / "a.jpg", 100, 50)
    (root / "labels").mkdir()
    (root / "labels" / "a.txt").write_text("".join(f"{i} 0.5 0.5 0.5 0.5\n" for i in (11, 2, 10, 0)))
    convert("yolo", "voc", root, tmp_path / "voc", Options())
    assert (tmp_path / "voc" / "classes.txt").read_text() == "".join(f"{i}\n" for i in range(12))
    assert read_format("voc", tmp_path / "voc").items[0].objects.labels.tolist() == [11, 2, 10, 0]
