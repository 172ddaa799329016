"""MXNet RecordIO training data: the ``.rec`` files of a File-mode channel as a random-access
:class:`~sagedet.data.sample.SampleSource`, and a Pipe-mode stream as raw samples one by one.

File mode: every ``.rec`` file under the channel's folder (sorted by path) is indexed up front by
walking its framing words (8 bytes read per record, then a seek), so that every record of the file
is read, as MXNet's built-in reads them; then every record's label is read and checked (header and
label only: the image bytes are not read). All problems found are reported at once. A sample's
image bytes are read from its offset when the DataLoader worker asks for it, so a large file is
never held in memory.

An ``.idx`` file beside a ``.rec`` (same name, suffix .idx) is not trusted: one that disagrees with
the walk (stale, from another file, lines missing or repeated, offsets where no record starts) is
named in a warning and ignored. Checking an .idx costs the walk itself (its offsets must chain from
byte 0 to the end of the file, each record's parts included), so the walk is what is used.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..errors import DataError
from .annotations import ClassNames
from .detection_label import parse_detection_label
from .recordio import (HEADER, HEADER_SIZE, LENGTH_LIMIT, MAGIC, WORD, Record, RecordReader, read_exactly, read_index,
                       read_record_at, record_at, record_where, scan_offsets, unpack)
from .sample import Objects, RawSample, problems_report

logger = logging.getLogger(__name__)


def class_names_beside(rec: Path, num_classes: int) -> dict[int, str]:
    """Class names for a .rec file, which holds none: ``NAME.classes.json``, else ``classes.json`` in
    its folder (``[{"class_id": 0, "name": "dog"}, ...]``, as image+JSON's categories and as
    ``sagedet convert`` writes them); none if neither is there."""
    for path in (rec.with_suffix(".classes.json"), rec.with_name("classes.json")):
        if path.is_file():
            try:
                categories = json.loads(path.read_bytes())
            except (OSError, ValueError) as error:
                raise DataError(f"{path}: is not valid JSON (a list of classes was expected): {error}") from None
            names = ClassNames(num_classes)
            names.add(str(path), categories)
            return dict(sorted(names.names.items()))
    return {}


def record_name(file_name: str, record: Record) -> str:
    return record_where(file_name, record.index, record.offset)


def detection_objects(label: np.ndarray, scalar: bool, where: str, num_classes: int,
                      label_width: int | None) -> Objects:
    """The objects of a record's label array; a scalar label (the header's, ``scalar``) is refused."""
    if scalar:
        raise DataError(f"{where}: has a scalar label ({label[0]:g}) in its header, as classification records do; "
                        "object detection records carry a label array [A, B, ..., class_id, xmin, ymin, xmax, ymax, "
                        "...] (im2rec --pack-label)")
    return parse_detection_label(label, where, num_classes, label_width)


def record_sample(record: Record, file_name: str, num_classes: int, label_width: int | None) -> RawSample:
    """One image record → a raw sample (its label parsed and checked)."""
    where = record_name(file_name, record)
    image = unpack(record, file_name)
    objects = detection_objects(image.label, image.scalar, where, num_classes, label_width)
    return RawSample(where, image.image, objects)


def stream_samples(stream: BinaryIO, name: str, num_classes: int, label_width: int | None) -> Iterator[RawSample]:
    """The samples of a .rec stream (a Pipe-mode FIFO), one record in memory at a time."""
    for record in RecordReader(stream, name):
        yield record_sample(record, name, num_classes, label_width)


@dataclass(frozen=True)
class _Entry:
    path: Path
    file_name: str
    index: int
    offset: int
    objects: Objects


class RecordIOSource:
    """The records of the ``.rec`` files of one File-mode channel."""

    def __init__(self, channel_dir: Path, num_classes: int, label_width: int | None, channel: str) -> None:
        self.class_names: dict[int, str] = {}
        self._num_classes = num_classes
        self._label_width = label_width
        root = Path(channel_dir)
        files = sorted(path for path in root.rglob("*") if path.suffix.lower() == ".rec" and path.is_file()
                       and not any(part.startswith(".") for part in path.relative_to(root).parts))
        if not files:
            raise DataError(f"The {channel} channel ({root}) holds no .rec file (ContentType application/x-recordio)")
        entries: list[_Entry] = []
        errors: list[str] = []
        for path in files:
            file_name = f"{channel}/{path.relative_to(root).as_posix()}"
            try:
                entries += self._index_file(path, file_name, errors)
                for class_id, name in class_names_beside(path, num_classes).items():
                    self.class_names.setdefault(class_id, name)
            except DataError as error:
                errors.append(str(error))
        if errors:
            raise DataError(problems_report(errors, f"the {channel} data"))
        if not entries:
            raise DataError(f"The {channel} channel's .rec files ({', '.join(str(f) for f in files)}) hold no records")
        self._entries = entries

    def __len__(self) -> int:
        return len(self._entries)

    def name(self, index: int) -> str:
        entry = self._entries[index]
        return record_where(entry.file_name, entry.index, entry.offset)

    def read(self, index: int) -> RawSample:
        entry = self._entries[index]
        record = read_record_at(entry.path, entry.offset, entry.index)
        return RawSample(self.name(index), unpack(record, entry.file_name).image, entry.objects)

    def _index_file(self, path: Path, file_name: str, errors: list[str]) -> list[_Entry]:
        entries = []
        size = path.stat().st_size
        offsets = _offsets(path, file_name)
        with open(path, "rb") as stream:
            for i, offset in enumerate(offsets):
                try:
                    label, scalar = _read_label(stream, file_name, i, offset, size)
                    objects = detection_objects(label, scalar, record_where(file_name, i, offset), self._num_classes,
                                                self._label_width)
                    entries.append(_Entry(path, file_name, i, offset, objects))
                except DataError as error:
                    errors.append(str(error))
        return entries


def _offsets(path: Path, file_name: str) -> list[int]:
    """Every record's byte offset, by walking the framing words (a truncated file or a bad magic is an
    error here); an .idx file beside ``path`` that disagrees is named in a warning and ignored."""
    offsets = scan_offsets(path, file_name)
    index_file = path.with_suffix(".idx")
    if index_file.is_file():
        problems = _index_problems(index_file, offsets)
        if problems:
            logger.warning(f"warning: {index_file} does not match {file_name}: {'; '.join(problems)}. The .idx file "
                           f"is ignored: all {len(offsets)} records of {file_name} are read, found by walking it.")
    return offsets


def _index_problems(index_file: Path, offsets: list[int]) -> list[str]:
    """How the .idx file's entries disagree with the records' ``offsets`` (none when they list every
    record once)."""
    try:
        entries = read_index(index_file)
    except DataError as error:
        return [str(error).removeprefix(f"{index_file}: ")]
    starts = set(offsets)
    listed: dict[int, int] = {}  # byte offset -> the key of its first entry
    nowhere, repeated = [], []
    for key, offset in entries:
        if offset not in starts:
            nowhere.append((key, offset))
        elif offset in listed:
            repeated.append((key, offset))
        listed.setdefault(offset, key)
    problems = []
    if nowhere:
        problems.append(f"{len(nowhere)} of its {len(entries)} entries point where no record starts "
                        f"({_examples(nowhere)})")
    if repeated:
        repeat = "entry repeats" if len(repeated) == 1 else "entries repeat"
        problems.append(f"{len(repeated)} {repeat} an earlier entry's byte offset ({_examples(repeated)})")
    missing = [offset for offset in offsets if offset not in listed]
    if missing:
        problems.append(f"it lists {len(offsets) - len(missing)} of the {len(offsets)} records (the first one "
                        f"missing is at byte {missing[0]})")
    return problems


def _examples(entries: list[tuple[int, int]], shown: int = 3) -> str:
    listed = ", ".join(f"key {key} at byte {offset}" for key, offset in entries[:shown])
    return listed + (", ..." if len(entries) > shown else "")


def _read_label(stream: BinaryIO, file_name: str, index: int, offset: int, size: int) -> tuple[np.ndarray, bool]:
    """The label array of the record at ``offset`` and whether it is the header's scalar label, reading
    the framing word, the 24-byte header and the label only (a record split in parts is read whole)."""
    stream.seek(offset)
    head = stream.read(8 + HEADER_SIZE)
    if len(head) == 8 + HEADER_SIZE:
        magic, lrec = WORD.unpack_from(head)
        length = lrec & (LENGTH_LIMIT - 1)
        if magic == MAGIC and lrec >> 29 == 0 and length >= HEADER_SIZE and offset + 8 + length <= size:
            flag, scalar_label = HEADER.unpack_from(head, 8)[:2]
            if flag == 0:
                return np.array([scalar_label], dtype=np.float32), True
            if HEADER_SIZE + 4 * flag <= length:
                return np.frombuffer(read_exactly(stream, 4 * flag), "<f4").astype(np.float32), False
    # split in parts, too short, or not a record: read it whole, the reader names the problem
    image = unpack(record_at(stream, file_name, offset, index), file_name)
    return image.label, image.scalar
