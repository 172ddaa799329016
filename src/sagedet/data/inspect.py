"""``sagedet inspect FILE.rec``: what each record of an MXNet RecordIO file holds, as one JSON line per record::

    {"index": 0, "offset": 0, "id": 0, "id2": 0, "label": [2.0, 5.0, 0.0, 0.1, 0.2, 0.5, 0.6],
     "format": "JPEG", "width": 500, "height": 400, "bytes": 31337, "sha256": "...",
     "objects": [{"class_id": 0, "xmin": 0.1, "ymin": 0.2, "xmax": 0.5, "ymax": 0.6}]}

``label`` is the header's label array (one value for a scalar label), ``format``, ``width`` and
``height`` come from the image's header (``format`` null when the bytes are no image PIL knows),
``sha256`` is the hash of the encoded image bytes. A record whose label does not parse as a
detection label gets an ``error`` key instead of ``objects``, and the inspection goes on; broken
framing (a bad magic, a truncated file) stops it with an error naming the file, record and offset.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .convert.dataset import ANY_CLASS_ID, image_header
from .recordio import Record, RecordReader, unpack
from .recordio_source import record_name, record_sample


def inspect_records(path: Path, limit: int | None = None, num_classes: int | None = None) -> Iterator[dict]:
    """A description of each record of ``path`` (the first ``limit``); ``num_classes`` bounds class ids."""
    with open(path, "rb") as stream:
        for record in itertools.islice(RecordReader(stream, str(path)), limit):
            yield describe(record, str(path), num_classes or ANY_CLASS_ID)


def describe(record: Record, file_name: str, num_classes: int) -> dict[str, Any]:
    where = record_name(file_name, record)
    entry: dict[str, Any] = {"index": record.index, "offset": record.offset}
    try:
        image = unpack(record, file_name)
    except DataError as error:
        return {**entry, "error": _reason(error, where)}
    entry.update(id=image.id, id2=image.id2, label=[float(str(value)) for value in image.label])
    try:
        entry["format"], entry["width"], entry["height"] = image_header(where, image.image)
    except DataError:
        entry.update(format=None, width=None, height=None)
    entry.update(bytes=len(image.image), sha256=hashlib.sha256(image.image).hexdigest())
    try:
        objects = record_sample(record, file_name, num_classes, None).objects
    except DataError as error:
        return {**entry, "error": _reason(error, where)}
    entry["objects"] = [{"class_id": int(label), **dict(zip(("xmin", "ymin", "xmax", "ymax"),
                                                            (float(str(v)) for v in box)))}
                        for label, box in zip(objects.labels, objects.boxes.astype(np.float32))]
    return entry


def _reason(error: DataError, where: str) -> str:
    return str(error).removeprefix(f"{where}: ")


def print_records(path: Path, limit: int | None, num_classes: int | None) -> int:
    """Prints one JSON line per record; the number of records with an error."""
    errors = 0
    for entry in inspect_records(path, limit, num_classes):
        print(json.dumps(entry), flush=True)
        errors += "error" in entry
    return errors
