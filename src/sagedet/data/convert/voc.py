"""Pascal VOC XML: one XML file per image, as the VOC devkit lays them out (``Annotations/*.xml``
beside ``JPEGImages/``)::

    <annotation><filename>dog1.jpg</filename>
      <size><width>500</width><height>400</height><depth>3</depth></size>
      <object><name>dog</name><difficult>0</difficult>
        <bndbox><xmin>112</xmin><ymin>135</ymin><xmax>172</xmax><ymax>262</ymax></bndbox></object>
    </annotation>

Corners are 1-based pixel indices, both inclusive, as VOC writes them: a box covering pixel
columns 111..171 counted from 0 has xmin 112, xmax 172. Objects name their class; class ids come
from a class list (``--classes``, else ``classes.txt`` in the VOC folder, one name per line, id =
line number - 1), else from the sorted names found. ``difficult`` and ``truncated`` flags are not
kept. Read: the XMLs under ``SRC/Annotations`` (or ``SRC``), images ``<filename>`` under
``--images``, else ``SRC/JPEGImages`` (or ``SRC``). Written: ``DST/Annotations/<name>.xml``,
``DST/JPEGImages/<name>``, ``DST/classes.txt``; written corners are whole pixels.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from ...errors import DataError
from ..annotations import pixel_annotations
from .dataset import (Dataset, Item, Options, claim, collect, image_file_item, pixel_boxes, read_class_list, safe_name,
                      write_class_list, write_per_image)

CORNERS = ("xmin", "ymin", "xmax", "ymax")
CLASS_LIST = "classes.txt"


@dataclass(frozen=True)
class _Annotation:
    """One parsed XML: where it is, the image's file name, its claimed size, its objects (name, corners)."""

    where: str
    filename: str
    size: tuple[int, int] | None
    objects: list[tuple[str, list[float]]]


def read(src: Path, options: Options) -> Dataset:
    xml_dir = _subfolder(src, "Annotations")
    images = options.images or _subfolder(src, "JPEGImages")
    annotations = collect(sorted(xml_dir.rglob("*.xml")), _parse, str(xml_dir))
    if not annotations:
        raise DataError(f"{xml_dir} holds no .xml files (Pascal VOC annotations)")
    class_list = options.classes or (src / CLASS_LIST if (src / CLASS_LIST).is_file() else None)
    if class_list is not None:
        names = read_class_list(class_list)
        origin = f"the class list {class_list}"
    else:
        names = dict(enumerate(sorted({name for annotation in annotations for name, _ in annotation.objects})))
        origin = "the sorted names found"
    ids = {name: class_id for class_id, name in names.items()}

    def item(annotation: _Annotation) -> Item:
        boxes = []
        for i, (name, (xmin, ymin, xmax, ymax)) in enumerate(annotation.objects):
            if name not in ids:
                raise DataError(f"{annotation.where}: object {i} is a {name!r}, which is not in {origin} "
                                f"({', '.join(names.values())})")
            boxes.append({"class_id": ids[name], "left": xmin - 1, "top": ymin - 1, "width": xmax - xmin + 1,
                          "height": ymax - ymin + 1})
        return image_file_item(annotation.where, images / annotation.filename, annotation.filename,
                               lambda width, height: pixel_annotations(annotation.where, boxes, width, height,
                                                                       len(names)), annotation.size)

    notes = [] if class_list else [f"class ids from the sorted class names: {names}"]
    return Dataset(collect(annotations, item, str(xml_dir)), names, notes)


def _subfolder(src: Path, name: str) -> Path:
    return src / name if (src / name).is_dir() else src


def _parse(path: Path) -> _Annotation:
    where = str(path)
    try:
        root = ElementTree.parse(path).getroot()
    except (ElementTree.ParseError, OSError) as error:
        raise DataError(f"{where}: is not a readable XML file ({error})") from None
    if root.tag != "annotation":
        raise DataError(f"{where}: the root element is <{root.tag}>, a VOC annotation's is <annotation>")
    filename = _text(where, root, "filename")
    size = root.find("size")
    claimed = None if size is None else (_integer(where, size, "width"), _integer(where, size, "height"))
    objects = []
    for i, element in enumerate(root.findall("object")):
        box = element.find("bndbox")
        if box is None:
            raise DataError(f"{where}: <object> {i} has no <bndbox>")
        corners = [_number(f"{where}: <object> {i}", box, key) for key in CORNERS]
        objects.append((_text(where, element, "name"), corners))
    return _Annotation(where, filename, claimed, objects)


def _text(where: str, element: ElementTree.Element, tag: str) -> str:
    text = element.findtext(tag)
    if text is None or not text.strip():
        raise DataError(f"{where}: <{element.tag}> lacks <{tag}>")
    return text.strip()


def _number(where: str, element: ElementTree.Element, tag: str) -> float:
    text = _text(where, element, tag)
    try:
        return float(text)
    except ValueError:
        raise DataError(f"{where}: <{tag}> is {text!r}, not a number") from None


def _integer(where: str, element: ElementTree.Element, tag: str) -> int:
    value = _number(where, element, tag)
    if not value.is_integer():
        raise DataError(f"{where}: <size><{tag}> is {value:g}, not a whole number of pixels")
    return int(value)


def write(dataset: Dataset, dst: Path, options: Options) -> list[Path]:
    claim(dst)
    write_per_image(dataset.items, dst / "JPEGImages", dst / "Annotations", ".xml", partial(_xml, dataset))
    write_class_list(dst / CLASS_LIST, dataset, always=True)  # the only record of which name is which id
    return [dst]


def _xml(dataset: Dataset, item: Item) -> str:
    root = ElementTree.Element("annotation")
    ElementTree.SubElement(root, "folder").text = "JPEGImages"
    ElementTree.SubElement(root, "filename").text = safe_name(item.name)
    size = ElementTree.SubElement(root, "size")
    for tag, value in (("width", item.width), ("height", item.height), ("depth", 3)):
        ElementTree.SubElement(size, tag).text = str(value)
    ElementTree.SubElement(root, "segmented").text = "0"
    for label, (left, top, right, bottom) in zip(item.objects.labels, pixel_boxes(item)):
        element = ElementTree.SubElement(root, "object")
        ElementTree.SubElement(element, "name").text = dataset.class_name(int(label))
        for tag in ("pose", "truncated", "difficult"):
            ElementTree.SubElement(element, tag).text = "Unspecified" if tag == "pose" else "0"
        xmin, ymin = round(left) + 1, round(top) + 1
        corners = (xmin, ymin, max(round(right), xmin), max(round(bottom), ymin))
        box = ElementTree.SubElement(element, "bndbox")
        for tag, value in zip(CORNERS, corners):
            ElementTree.SubElement(box, tag).text = str(value)
    ElementTree.indent(root)
    return ElementTree.tostring(root, encoding="unicode") + "\n"
