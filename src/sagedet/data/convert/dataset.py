"""The in-memory form every conversion goes through, and the helpers the format modules share.

A :class:`Dataset` is a list of images (:class:`Item`: a relative name, the stored pixel size, the
objects as :class:`~sagedet.data.sample.Objects` — corners normalized to [0, 1] — and a function
that reads the encoded image bytes) plus the class names (class id → name). Readers build one from
a format, writers write one; images are copied as their original encoded bytes, never re-encoded.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from ...errors import DataError
from ..dataset import DECODE_ERRORS
from ..imagejson import IMAGE_SUFFIXES
from ..sample import Objects, problems_report
from ..textfile import read_text

ANY_CLASS_ID = 1 << 31
"""The class id bound used where a format names no classes and no class list is given."""
SUFFIX_OF_FORMAT = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png"}


@dataclass(frozen=True)
class Item:
    """One image: ``name`` is the relative POSIX path it is written under (e.g. ``images/dog1.jpg``),
    ``width`` × ``height`` its stored pixel size, ``read`` returns its encoded bytes."""

    name: str
    width: int
    height: int
    objects: Objects
    read: Callable[[], bytes]


@dataclass
class Dataset:
    """The images of a data set, its class names (possibly partial or empty) and notes for the user
    (what a conversion left out)."""

    items: list[Item]
    class_names: dict[int, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        """One more than the highest class id named or used."""
        used = [int(item.objects.labels.max()) for item in self.items if len(item.objects.labels)]
        return max([-1, *used, *self.class_names]) + 1

    def class_name(self, class_id: int) -> str:
        """The class's name; a class without one is named by its number."""
        return self.class_names.get(class_id, str(class_id))

    def all_class_names(self) -> list[str]:
        return [self.class_name(i) for i in range(self.num_classes)]


@dataclass(frozen=True)
class Options:
    """What the command line passes on: ``images``, ``annotations``: the source's folders where they
    are not at their default places; ``classes``: a class list file (one name per line, class id =
    line number - 1); ``s3_prefix``: where a written manifest's images will be; ``label_attribute``:
    a manifest's label attribute; ``label_header``: A of written RecordIO labels (2, or 4 with the
    image's width and height)."""

    images: Path | None = None
    annotations: Path | None = None
    classes: Path | None = None
    s3_prefix: str | None = None
    label_attribute: str | None = None
    label_header: int = 2


# --- reading ---------------------------------------------------------------------------------------
T = TypeVar("T")
E = TypeVar("E")


def collect(entries: Iterable[E], build: Callable[[E], T], what: str) -> list[T]:
    """``build`` applied to every entry; every DataError raised on the way is reported at once."""
    built, problems = [], []
    for entry in entries:
        try:
            built.append(build(entry))
        except DataError as error:
            problems.append(str(error))
    if problems:
        raise DataError(problems_report(problems, what))
    return built


def image_header(where: str, image: bytes | Path) -> tuple[str, int, int]:
    """The format (``JPEG``, ``PNG``, ...), width and height of an image, from its header only."""
    try:
        with Image.open(io.BytesIO(image) if isinstance(image, bytes) else image) as opened:
            return str(opened.format), *opened.size
    except DECODE_ERRORS as error:
        raise DataError(f"{where}: the image does not decode ({error})") from None


def image_file_item(where: str, path: Path, name: str, objects: Callable[[int, int], Objects],
                    claimed_size: tuple[Any, Any] | None = None) -> Item:
    """An image file as an item; ``objects`` makes its objects from its real width and height;
    ``claimed_size`` is what the annotation says the size is (an error if it differs)."""
    if not path.is_file():
        raise DataError(f"{where}: image {name!r} not found ({path} is not a file)")
    _, width, height = image_header(f"{where}: {path}", path)
    if claimed_size is not None and tuple(claimed_size) != (width, height):
        raise DataError(f"{where}: the annotation says the image is {claimed_size[0]}x{claimed_size[1]} but {path} "
                        f"is {width}x{height} (sizes refer to the stored pixels; EXIF orientation is not applied)")
    return Item(name, width, height, objects(width, height), path.read_bytes)


def find_images(root: Path) -> list[Path]:
    """The .jpg, .jpeg and .png files under ``root`` (not hidden), sorted."""
    return sorted(path for path in root.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
                  and not any(part.startswith(".") for part in path.relative_to(root).parts))


def load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except OSError as error:
        raise DataError(f"{path}: cannot be read ({error.strerror})") from None
    except ValueError as error:
        raise DataError(f"{path}: is not valid JSON: {error}") from None


def read_class_list(path: Path) -> dict[int, str]:
    """A class list: one name per line, class id = line number - 1 (blank lines at the end ignored)."""
    names = [name.strip() for name in read_text(path, "a class list (one class name per line)").rstrip().split("\n")]
    for number, name in enumerate(names, 1):
        if not name:
            raise DataError(f"{path}: line {number} is blank; a class list holds one class name per line "
                            "(class id = line number - 1)")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise DataError(f"{path}: names {', '.join(map(repr, duplicates))} more than once; class names must differ")
    return dict(enumerate(names))


def categories(dataset: Dataset) -> list[dict]:
    """The class names as image+JSON's ``categories``: ``[{"class_id": 0, "name": "dog"}]``."""
    return [{"class_id": i, "name": name} for i, name in enumerate(dataset.all_class_names())]


# --- boxes -----------------------------------------------------------------------------------------
def pixel_boxes(item: Item) -> np.ndarray:
    """The item's boxes in pixels (float64 xmin, ymin, xmax, ymax; origin top-left)."""
    return item.objects.boxes.astype(np.float64) * [item.width, item.height, item.width, item.height]


def pixel_number(value: float) -> int | float:
    """A pixel coordinate as written to JSON: rounded to 1/1000 pixel, an int when whole."""
    rounded = round(float(value), 3)
    return int(rounded) if rounded.is_integer() else rounded


def pixel_annotation_list(item: Item) -> list[dict]:
    """SageMaker's pixel annotations of an item (image+JSON files and Ground Truth manifests)."""
    return [{"class_id": int(label), "left": pixel_number(xmin), "top": pixel_number(ymin),
             "width": pixel_number(xmax - xmin), "height": pixel_number(ymax - ymin)}
            for label, (xmin, ymin, xmax, ymax) in zip(item.objects.labels, pixel_boxes(item))]


def image_size_list(item: Item) -> list[dict]:
    """SageMaker's ``image_size`` value."""
    return [{"width": item.width, "height": item.height, "depth": 3}]


# --- writing ---------------------------------------------------------------------------------------
def safe_name(name: str) -> str:
    """A relative POSIX path that stays inside the folder it is written to ("..", "/" dropped)."""
    parts = [part for part in PurePosixPath(name.replace("\\", "/")).parts if part not in ("/", ".", "..")]
    return "/".join(parts) or "image"


def claim(*paths: Path) -> None:
    """Refuses to overwrite: each path must not exist (a folder may exist if it is empty)."""
    for path in paths:
        if path.is_dir() and not any(path.iterdir()):
            continue
        if path.exists():
            raise DataError(f"{path} exists already; convert writes only new files (remove it or choose another "
                            "destination)")


def unique_paths(paths: list[Path], items: list[Item]) -> list[Path]:
    """``paths`` (one per item), checked to be all different."""
    seen: dict[Path, str] = {}
    for path, item in zip(paths, items):
        if path in seen:
            raise DataError(f"images {seen[path]!r} and {item.name!r} would both be written as {path}; "
                            "image names must differ (other than in their suffix)")
        seen[path] = item.name
    return paths


def write_file(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "xb") as out:  # "x": never overwrite
        out.write(data.encode("utf-8") if isinstance(data, str) else data)


def copy_images(items: list[Item], root: Path) -> list[Path]:
    """Writes each item's encoded bytes as ``root/<name>``; returns the paths."""
    paths = unique_paths([root / safe_name(item.name) for item in items], items)
    claim(*paths)
    for path, item in zip(paths, items):
        write_file(path, item.read())
    return paths


def write_per_image(items: list[Item], image_root: Path, annotation_root: Path, suffix: str,
                    text: Callable[[Item], str]) -> None:
    """Copies each item's image under ``image_root`` and writes ``text(item)`` as
    ``annotation_root/<name with suffix>`` (the formats with one annotation file per image)."""
    paths = unique_paths([annotation_root / Path(safe_name(item.name)).with_suffix(suffix) for item in items], items)
    copy_images(items, image_root)
    for path, item in zip(paths, items):
        write_file(path, text(item))


def write_class_list(path: Path, dataset: Dataset, always: bool = False) -> None:
    """One name per line, class id = line number - 1 (unless ``always``, nothing when the data set names
    no class)."""
    if dataset.class_names or always:
        write_file(path, "".join(f"{name}\n" for name in dataset.all_class_names()))


def relative_to(path: Path, root: Path) -> str:
    return Path(os.path.relpath(path, root)).as_posix()
