"""Shared pieces of the conversion tests: a small generated data set and a comparison of data sets."""

from __future__ import annotations

import io
import json
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
from PIL import Image

from sagedet.data.convert.dataset import Dataset, Item, Options, pixel_boxes
from sagedet.data.convert.formats import read
from sagedet.data.synthetic import SYNTHETIC_CLASSES, write_synthetic_dataset
from sagedet.errors import DataError

CLASS_NAMES = dict(enumerate(SYNTHETIC_CLASSES))
# where each format is written under a test's folder
DESTINATIONS = {"coco": "coco/data.json", "voc": "voc", "yolo": "yolo", "manifest": "manifest/data.manifest",
                "imagejson": "imagejson/train", "recordio": "rec/data.rec"}


def encoded(width: int, height: int, image_format: str = "JPEG", color=(90, 120, 200)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, image_format)
    return out.getvalue()


def write_image(path: Path, width: int, height: int, image_format: str = "JPEG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encoded(width, height, image_format))
    return path


def image_json_source(root: Path, count: int = 4) -> Path:
    """A generated image+JSON data set (``root/train`` and ``root/train_annotation``) of ``count``
    JPEGs with 1-3 objects each, plus a PNG without objects in a subfolder."""
    write_synthetic_dataset(root, "train", count, seed=3, image_size=(80, 64))
    write_image(root / "train" / "more" / "empty.png", 60, 50, "PNG")
    document = {"file": "more/empty.png", "image_size": [{"width": 60, "height": 50, "depth": 3}],
                "annotations": []}
    (root / "train_annotation" / "empty.json").write_text(json.dumps(document))
    return root / "train"


def by_stem(dataset: Dataset) -> dict[str, Item]:
    items = {PurePosixPath(item.name).stem: item for item in dataset.items}
    assert len(items) == len(dataset.items), "image stems differ"
    return items


def assert_same(expected: Dataset, actual: Dataset, atol: float = 1e-6) -> None:
    """Same images (by stem; same bytes and size), same classes and objects (corners within ``atol``
    normalized and within 1 pixel), same class names."""
    assert actual.class_names == expected.class_names
    want, got = by_stem(expected), by_stem(actual)
    assert sorted(got) == sorted(want)
    for stem, item in want.items():
        other = got[stem]
        assert (other.width, other.height) == (item.width, item.height), stem
        assert other.read() == item.read(), f"{stem}: the image bytes changed"
        assert other.objects.labels.tolist() == item.objects.labels.tolist(), stem
        np.testing.assert_allclose(other.objects.boxes, item.objects.boxes, atol=atol, rtol=0, err_msg=stem)
        np.testing.assert_allclose(pixel_boxes(other), pixel_boxes(item), atol=1.0, rtol=0, err_msg=stem)


def read_format(format_name: str, path: Path, **options) -> Dataset:
    return read(format_name, path, Options(**options))


def read_error(format_name: str, path: Path, **options) -> str:
    """The message of the DataError that reading ``path`` raises."""
    with pytest.raises(DataError) as caught:
        read_format(format_name, path, **options)
    return str(caught.value)
