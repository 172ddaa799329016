"""MXNet RecordIO (.rec) as im2rec ``--pack-label`` and GluonCV write it for object detection: one
image record per image (header ``IfQQ``, the label array, the encoded image bytes), the label
``[A, B, <A - 2 extra header values>, class_id, xmin, ymin, xmax, ymax, ...]`` with corners normalized
(see :mod:`sagedet.data.recordio` and :mod:`sagedet.data.detection_label`).

A .rec file names neither its images nor its classes; side files beside ``NAME.rec`` do:

- ``NAME.idx``: ``key<TAB>byte offset`` per record (MXNet's MXIndexedRecordIO);
- ``NAME.lst``: im2rec's list, ``index<TAB>label values...<TAB>image path`` per record; a record's
  image name is the path on the line whose index is the record header's id;
- ``NAME.classes.json`` (else ``classes.json`` in the same folder): the class names, as image+JSON's
  ``categories``: ``[{"class_id": 0, "name": "dog"}]``.

Written with A = 2, B = 5 (SageMaker's notebooks), or A = 4 with the image's width and height
(``--label-header 4``, GluonCV's tutorial); header id and .idx key = the record's position; the images'
original encoded bytes, not re-encoded. Read: extra header values and extra columns (B > 5) are
dropped; a broken framing stops the reading, bad labels are all reported at once.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np

from ...errors import DataError
from ..detection_label import format_detection_label
from ..recordio import Record, RecordReader, RecordWriter, pack, read_record_at, unpack
from ..recordio_source import class_names_beside, record_sample
from ..textfile import read_text
from .dataset import (ANY_CLASS_ID, SUFFIX_OF_FORMAT, Dataset, Item, Options, categories, claim, collect,
                      image_header, read_class_list, write_file)


def side_files(rec: Path) -> tuple[Path, Path, Path]:
    """The .idx, .lst and class names files of ``rec``."""
    return rec.with_suffix(".idx"), rec.with_suffix(".lst"), rec.with_suffix(".classes.json")


def read(src: Path, options: Options) -> Dataset:
    if not src.is_file():
        raise DataError(f"{src} is not a file (a RecordIO .rec file)")
    _, lst, _ = side_files(src)
    names = read_class_list(options.classes) if options.classes else _class_names(src)
    num_classes = len(names) if options.classes else ANY_CLASS_ID
    image_names = _read_lst(lst) if lst.is_file() else {}

    def item(record: Record) -> Item:
        sample = record_sample(record, str(src), num_classes, None)
        image_format, width, height = image_header(sample.name, sample.image_bytes)
        suffix = SUFFIX_OF_FORMAT.get(image_format, f".{image_format.lower()}")
        header_id = unpack(record, str(src)).id
        name = image_names.get(header_id, f"{src.stem}_{record.index:06d}{suffix}")
        return Item(name, width, height, sample.objects, partial(_image_at, src, record.offset, record.index))

    with open(src, "rb") as stream:
        items = collect(RecordReader(stream, str(src)), item, str(src))
    if not items:
        raise DataError(f"{src}: holds no records")
    return Dataset(items, names)


def _image_at(path: Path, offset: int, index: int) -> bytes:
    return unpack(read_record_at(path, offset, index), str(path)).image


def _class_names(src: Path) -> dict[int, str]:
    """The names in ``NAME.classes.json`` or ``classes.json`` beside ``src`` (none if neither is there)."""
    return class_names_beside(src, ANY_CLASS_ID)


def _read_lst(path: Path) -> dict[int, str]:
    """Index → image path of an im2rec .lst file."""
    names = {}
    text = read_text(path, "an im2rec .lst file ('index<TAB>label values...<TAB>image path' per line)")
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split("\t")
        if not line.strip():
            continue
        if len(fields) < 2 or not fields[0].strip().isdigit():
            raise DataError(f"{path}: line {number}: {line!r} is not 'index<TAB>label values...<TAB>image path' "
                            "(an im2rec .lst line)")
        names[int(fields[0])] = fields[-1].strip()
    return names


def write(dataset: Dataset, dst: Path, options: Options) -> list[Path]:
    idx, lst, classes = side_files(dst)
    claim(dst, idx, lst, classes)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(dst, "xb") as out, open(idx, "x", encoding="utf-8") as index, open(lst, "x", encoding="utf-8") as listing:
        writer = RecordWriter(out, index)
        for key, item in enumerate(dataset.items):
            extra = (item.width, item.height) if options.label_header == 4 else ()
            label = format_detection_label(item.objects, extra)
            writer.write(pack(label, item.read(), id=key), key)
            listing.write("\t".join([str(key), *map(str, label.astype(np.float32)), item.name]) + "\n")
    written = [dst, idx, lst]
    if dataset.class_names:
        write_file(classes, json.dumps(categories(dataset), indent=1) + "\n")
        written.append(classes)
    return written
