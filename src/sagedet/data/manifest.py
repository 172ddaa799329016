"""Ground Truth augmented manifests (object detection) as training data.

Each line of a manifest is a JSON object with ``source-ref`` (the image) and a label attribute
whose name is the user's (e.g. ``bounding-box``)::

    {"source-ref": "s3://bucket/images/img1.jpg",
     "bounding-box": {"image_size": [{"width": 500, "height": 400, "depth": 3}],
                      "annotations": [{"class_id": 0, "left": 111, "top": 134, "width": 61, "height": 128}]},
     "bounding-box-metadata": {"class-map": {"0": "dog"}, "type": "groundtruth/object-detection"}}

- **Pipe mode** (S3DataType AugmentedManifestFile, RecordWrapperType RecordIO): SageMaker streams, for
  each line, one RecordIO record per attribute in AttributeNames order — the image's bytes, then the
  label attribute's value as JSON text (then any further attributes, e.g. the metadata, as JSON).
  The image must come first (``source-ref`` first in AttributeNames). Records are taken by position:
  the record after an image is its label and must be a JSON object; after it, records that are JSON
  text are further attributes (ignored, but a metadata attribute's ``class-map`` names the classes),
  and the next one that is not is the next line's image.
- **File mode**: the channel's folder holds one or more ``.manifest`` files (JSON lines) and the
  images; each ``source-ref`` is found in the folder by the longest tail of its path that exists
  there (``s3://bucket/a/b/img.jpg`` → ``a/b/img.jpg``, ``b/img.jpg``, ``img.jpg``).

The label attribute is the one attribute (other than ``source-ref`` and ``*-metadata``) whose value
holds ``annotations``. Boxes are pixels of the stored image; they are normalized with the image's
real size (read from its header), and an ``image_size`` that disagrees with it is an error. Only RGB
JPEG and PNG images are accepted, as in image+JSON data: checked from their headers, up front in File
mode, as the records arrive in Pipe mode.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO
from urllib.parse import urlparse

from ..errors import DataError
from .annotations import ClassNames, kind, pixel_annotations
from .imagejson import rgb_image_size
from .recordio import Record, RecordReader, record_where
from .sample import ImageFile, ImageFiles, Objects, RawSample, problems_report
from .textfile import text_lines

SOURCE_REF = "source-ref"
METADATA_SUFFIX = "-metadata"
MANIFEST_TEXT = "a manifest (one JSON object per line)"


def label_attribute(where: str, line: dict) -> str:
    """The name of the line's label attribute (the object-detection annotation)."""
    candidates = [key for key, value in line.items()
                  if key != SOURCE_REF and not key.endswith(METADATA_SUFFIX)
                  and isinstance(value, dict) and "annotations" in value]
    if len(candidates) != 1:
        found = ", ".join(repr(key) for key in line) or "none"
        problem = "no attribute" if not candidates else f"several attributes ({', '.join(candidates)})"
        raise DataError(f"{where}: {problem} with 'annotations' (an object-detection label attribute, e.g. "
                        f"'bounding-box': {{'image_size': [...], 'annotations': [...]}}); attributes: {found}")
    return candidates[0]


def label_objects(where: str, value: Any, width: int, height: int, num_classes: int) -> Objects:
    """The objects of a label attribute's value for a ``width`` × ``height`` image."""
    if not isinstance(value, dict) or "annotations" not in value:
        raise DataError(f"{where}: the label must be an object with 'annotations' (and 'image_size'), got {kind(value)}")
    claimed = value.get("image_size")
    if isinstance(claimed, list) and claimed and isinstance(claimed[0], dict):
        size = (claimed[0].get("width"), claimed[0].get("height"))
        if size != (width, height):
            raise DataError(f"{where}: image_size says {size[0]}x{size[1]} but the image is {width}x{height} "
                            "(sizes refer to the stored pixels; EXIF orientation is not applied)")
    return pixel_annotations(where, value["annotations"], width, height, num_classes)


# --- Pipe mode: RecordIO-wrapped attributes ---------------------------------------------------------
IMAGE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")
"""How JPEG and PNG files begin."""
ATTRIBUTE_ORDER = ("each line's records are its image ('source-ref' first in AttributeNames), then its label "
                   "attribute, then any further attributes, as JSON text")


def _json_value(record: Record) -> tuple[Any, str | None]:
    """The record's JSON value and None, or None and why the record is not JSON text."""
    try:
        return json.loads(record.data), None
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError
        return None, str(error)


def _is_image(data: bytes) -> bool:
    return data.startswith(IMAGE_SIGNATURES)


def stream_samples(stream: BinaryIO, name: str, num_classes: int,
                   class_names: ClassNames | None = None) -> Iterator[RawSample]:
    """The samples of a RecordIO-wrapped augmented manifest stream: for each line an image record,
    then its label record (a JSON object), then any further attributes' records (JSON values, ignored,
    but the ``class-map`` of a metadata attribute names classes in ``class_names``).

    A record is taken by its position: the one after an image is that image's label; after a label, a
    record that is JSON text is a further attribute of the line, any other record the next line's image."""
    image: Record | None = None  # the current line's image, until its label arrives
    image_problem: str | None = None  # why that record is not JSON text
    labelled = False  # a label has been read: JSON records are further attributes until the next image
    for record in RecordReader(stream, name):
        where = record_where(name, record.index, record.offset)
        if image is not None:
            label_where = f"{where}, the label of the image at record {image.index}"
            value = _label_value(name, record, label_where, image, image_problem)
            image_where = f"{name}: records {image.index}-{record.index} (byte offset {image.offset})"
            width, height = rgb_image_size(image_where, image.data)
            yield RawSample(image_where, image.data, label_objects(label_where, value, width, height, num_classes))
            image, labelled = None, True
            continue
        value, problem = _json_value(record)
        if problem is not None:
            image, image_problem = record, problem
        elif not labelled:
            raise DataError(f"{where}: a JSON record before any image; the first of AttributeNames must be "
                            "'source-ref' (the image), then the label attribute")
        elif isinstance(value, dict) and "class-map" in value and class_names is not None:
            class_names.add_class_map(f"{where} (a metadata attribute)", value["class-map"])
    if image is not None:
        raise DataError(f"{record_where(name, image.index, image.offset)}: the stream ends after an image without "
                        "its label record")


def _label_value(name: str, record: Record, where: str, image: Record, image_problem: str | None) -> dict:
    """The JSON object of the label record that follows ``image``."""
    value, problem = _json_value(record)
    if problem is not None:
        image_where = record_where(name, image.index, image.offset)
        if _is_image(record.data) and not _is_image(image.data):
            raise DataError(f"{image_where}: is neither a JPEG or PNG image nor valid JSON ({image_problem}), and "
                            f"record {record.index} after it is an image; {ATTRIBUTE_ORDER}")
        if _is_image(record.data):
            raise DataError(f"{image_where}: an image followed by another image (record {record.index}), not by its "
                            "label; AttributeNames must be ['source-ref', <label attribute>] in this order")
        raise DataError(f"{where}: the label attribute is not valid JSON ({problem}); {ATTRIBUTE_ORDER}")
    if not isinstance(value, dict):
        raise DataError(f"{where}: the label attribute must be a JSON object with 'annotations' and 'image_size', "
                        f"got {kind(value)}; {ATTRIBUTE_ORDER}")
    return value


# --- File mode: .manifest files beside the images ------------------------------------------------------
class ManifestSource(ImageFiles):
    """The lines of the ``.manifest`` files in one File-mode channel, their images in the same folder."""

    def __init__(self, channel_dir: Path, num_classes: int, channel: str) -> None:
        root = Path(channel_dir)
        manifests = sorted(p for p in root.rglob("*.manifest") if p.is_file())
        if not manifests:
            raise DataError(f"The {channel} channel ({root}) holds no .manifest file (an augmented manifest in "
                            "File mode: JSON lines with 'source-ref' and a label attribute, the images beside it)")
        self._names = ClassNames(num_classes)
        self.class_names = self._names.names
        entries, errors = [], []
        for manifest in manifests:
            manifest_name = f"{channel}/{manifest.relative_to(root).as_posix()}"
            try:
                for number, text in text_lines(manifest, MANIFEST_TEXT, manifest_name):
                    if not text.strip():
                        continue
                    where = f"{manifest_name}: line {number}"
                    try:
                        entries.append(self._entry(where, text, root, channel, num_classes))
                    except DataError as error:
                        errors.append(str(error))
            except DataError as error:  # not UTF-8 (or unreadable): the rest of this manifest is not read
                errors.append(str(error))
        if errors:
            raise DataError(problems_report(errors, f"the {channel} data"))
        if not entries:
            raise DataError(f"The {channel} channel's manifests ({', '.join(map(str, manifests))}) hold no lines")
        self._entries = entries

    def _entry(self, where: str, text: str, root: Path, channel: str, num_classes: int) -> ImageFile:
        try:
            line = json.loads(text)
        except ValueError as error:
            raise DataError(f"{where}: is not valid JSON: {error}") from None
        if not isinstance(line, dict):
            raise DataError(f"{where}: must be a JSON object, got {kind(line)}")
        reference = line.get(SOURCE_REF)
        if not isinstance(reference, str) or not reference:
            raise DataError(f"{where}: lacks '{SOURCE_REF}' (the image's S3 URI or path)")
        attribute = label_attribute(where, line)
        path = find_image(root, reference)
        if path is None:
            raise DataError(f"{where}: image {reference!r} not found in the {channel} channel ({root}); looked for "
                            "the tails of its path there")
        name = f"{channel}/{path.relative_to(root).as_posix()}"
        width, height = rgb_image_size(f"{where}: {name}", path)
        objects = label_objects(f"{where}: '{attribute}'", line[attribute], width, height, num_classes)
        metadata = line.get(attribute + METADATA_SUFFIX)
        if isinstance(metadata, dict) and "class-map" in metadata:
            self._names.add_class_map(f"{where}: '{attribute}{METADATA_SUFFIX}'", metadata["class-map"])
        return ImageFile(name, path, objects)


def find_image(root: Path, reference: str) -> Path | None:
    parsed = urlparse(reference)
    key = parsed.path if parsed.scheme else reference
    parts = [part for part in PurePosixPath(key).parts if part not in ("/", "..", ".")]
    for start in range(len(parts)):
        candidate = root.joinpath(*parts[start:])
        if candidate.is_file():
            return candidate
    return None
