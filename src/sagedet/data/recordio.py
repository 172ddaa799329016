"""MXNet RecordIO, byte-compatible with dmlc-core's and ``mxnet.recordio``, without MXNet.

Framing (dmlc-core ``recordio.h``), little-endian words:

- each part: ``uint32 magic 0xced7230a``, ``uint32 lrec = cflag << 29 | length``, ``length`` bytes,
  zero padding to a multiple of 4;
- cflag 0: a whole record; 1, 2, 3: the first, a middle and the last part of a record that the
  writer split where the magic word occurred in the data at a 4-byte-aligned offset (the magic is
  dropped there; the reader puts it back between the parts).

Image records (``mxnet.recordio.pack``): a 24-byte header ``struct 'IfQQ'`` = flag, label, id, id2;
``flag`` > 0 says that ``flag`` float32 label values follow the header (then ``label`` is 0), flag 0
that the label is the scalar in the header; then the encoded image bytes.

``.idx`` files (``MXIndexedRecordIO``): one line per record, ``key<TAB>byte offset``.

Errors name the file, the record's index and its byte offset.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..errors import DataError
from .textfile import text_lines

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
WORD = struct.Struct("<II")
LENGTH_LIMIT = 1 << 29
"""A part's length must fit in the low 29 bits of the length word."""
HEADER = struct.Struct("<IfQQ")
HEADER_SIZE = HEADER.size  # 24


@dataclass(frozen=True)
class Record:
    """One record's bytes, its position in the stream (``index``, from 0) and the byte ``offset``
    of its first part."""

    index: int
    offset: int
    data: bytes


@dataclass(frozen=True)
class ImageRecord:
    """An unpacked image record: ``label`` is the float32 label array (one value for a scalar
    label, ``scalar`` True), ``image`` the encoded image bytes."""

    label: np.ndarray
    id: int
    id2: int
    image: bytes
    scalar: bool = False


def record_where(name: str, index: int, offset: int) -> str:
    """How errors and sample names refer to a record: ``train.rec: record 3 (byte offset 1024)``."""
    return f"{name}: record {index} (byte offset {offset})"


# --- framing ---------------------------------------------------------------------------------------
def frame(data: bytes) -> bytes:
    """``data`` as it is written to a .rec file: split where the magic word occurs at an aligned
    offset (dmlc-core ``RecordIOWriter::WriteRecord``), padded to 4 bytes."""
    if len(data) >= LENGTH_LIMIT:
        raise ValueError(f"a RecordIO record holds less than {LENGTH_LIMIT} bytes, not {len(data)}")
    out = bytearray()
    start = 0
    aligned_end = len(data) // 4 * 4
    position = data.find(MAGIC_BYTES)
    while 0 <= position < aligned_end:
        if position % 4 == 0:
            out += WORD.pack(MAGIC, (1 if start == 0 else 2) << 29 | (position - start))
            out += data[start:position]
            start = position + 4
            position = data.find(MAGIC_BYTES, start)
        else:
            position = data.find(MAGIC_BYTES, position + 1)
    out += WORD.pack(MAGIC, (3 if start else 0) << 29 | (len(data) - start))
    out += data[start:]
    out += b"\0" * (-len(data) % 4)
    return bytes(out)


class RecordWriter:
    """Writes records to a binary stream; with ``index`` (a text stream) also the .idx lines."""

    def __init__(self, stream: BinaryIO, index: io.TextIOBase | None = None) -> None:
        self.stream = stream
        self.index = index
        self.count = 0
        self.offset = stream.tell() if stream.seekable() else 0

    def write(self, data: bytes, key: int | None = None) -> int:
        """Write one record; returns its byte offset."""
        offset = self.offset
        framed = frame(data)
        self.stream.write(framed)
        self.offset += len(framed)
        if self.index is not None:
            self.index.write(f"{self.count if key is None else key}\t{offset}\n")
        self.count += 1
        return offset


class RecordReader:
    """Reads records one after another from a binary stream (a file or a FIFO), never more than
    one record in memory. ``name`` is the file's name in error messages."""

    def __init__(self, stream: BinaryIO, name: str, offset: int = 0, index: int = 0) -> None:
        self.stream = stream
        self.name = name
        self.offset = offset
        self.index = index
        self._file_size: int | None = None

    def __iter__(self) -> Iterator[Record]:
        while (record := self.next()) is not None:
            yield record

    def next(self) -> Record | None:
        """The next record, or None at the end of the stream."""
        start = self.offset
        parts: list[bytes] = []
        while (part := self._part(start, first=not parts)) is not None:
            cflag, length = part
            body = self._read(length + (-length % 4), start, allow_end=False)
            parts.append(body[:length])
            if cflag in (0, 3):
                break
        if not parts:
            return None
        record = Record(self.index, start, MAGIC_BYTES.join(parts))
        self.index += 1
        return record

    def skip(self) -> int | None:
        """Skip the next record without keeping its bytes (seekable streams): its offset, or None
        at the end."""
        start = self.offset
        first = True
        while (part := self._part(start, first)) is not None:
            cflag, length = part
            padded = length + (-length % 4)
            self.stream.seek(padded, io.SEEK_CUR)
            self.offset += padded
            first = False
            if cflag in (0, 3):
                break
        if first:
            return None
        if self._file_size is None:  # once per reader: skipping a file seeks to each record's end
            position = self.stream.tell()
            self._file_size = self.stream.seek(0, io.SEEK_END)
            self.stream.seek(position)
        if self.offset > self._file_size:
            raise DataError(self._where(start, start) + "the file ends inside this record (truncated file)")
        self.index += 1
        return start

    def _part(self, start: int, first: bool) -> tuple[int, int] | None:
        """The continuation flag and length of the next part of the record at ``start``; None at the
        end of the stream before a record's first part."""
        word = self._read(8, start, allow_end=first)
        if word is None:
            return None
        magic, lrec = WORD.unpack(word)
        if magic != MAGIC:
            raise DataError(self._where(start, self.offset - 8)
                            + f"bad magic 0x{magic:08x} where a record starts (expected 0x{MAGIC:08x}); "
                            "is this a RecordIO (.rec) file?")
        cflag, length = lrec >> 29, lrec & (LENGTH_LIMIT - 1)
        if not first and cflag not in (2, 3):
            raise DataError(self._where(start, self.offset - 8)
                            + f"a record split in parts goes on with continuation flag {cflag} (expected 2 or 3)")
        if first and cflag in (2, 3):
            raise DataError(self._where(start, self.offset - 8)
                            + f"a record starts with continuation flag {cflag} (expected 0 or 1)")
        return cflag, length

    def _read(self, size: int, start: int, allow_end: bool) -> bytes | None:
        data = read_exactly(self.stream, size)
        if not data and allow_end:
            return None
        if len(data) < size:
            raise DataError(self._where(start, self.offset)
                            + f"the file ends inside this record: {len(data)} of {size} bytes "
                            "(truncated file)")
        self.offset += size
        return data

    def _where(self, start: int, at: int) -> str:
        where = record_where(self.name, self.index, start)
        return (where[:-1] + f", at byte {at}): " if at != start else where + ": ")


def read_exactly(stream: BinaryIO, size: int) -> bytes:
    """Up to ``size`` bytes: fewer only at the end of the stream (a FIFO may return short reads)."""
    chunks = []
    remaining = size
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def record_at(stream: BinaryIO, name: str, offset: int, index: int) -> Record:
    """The record starting at byte ``offset`` of a seekable stream (``name``: its file, in errors)."""
    stream.seek(offset)
    record = RecordReader(stream, name, offset, index).next()
    if record is None:
        raise DataError(f"{record_where(name, index, offset)}: no record there, the file ends")
    return record


def read_record_at(path: Path, offset: int, index: int) -> Record:
    """The record starting at byte ``offset`` of ``path``."""
    with open(path, "rb") as stream:
        return record_at(stream, str(path), offset, index)


# --- image records ---------------------------------------------------------------------------------
def pack(label: np.ndarray | float | list[float], image: bytes, id: int = 0, id2: int = 0) -> bytes:
    """``mxnet.recordio.pack``: the header, the label array (if not a scalar), the image bytes."""
    if np.isscalar(label):
        return HEADER.pack(0, float(label), id, id2) + image  # type: ignore[arg-type]
    values = np.asarray(label, dtype="<f4").ravel()
    return HEADER.pack(values.size, 0.0, id, id2) + values.tobytes() + image


def unpack(record: Record, name: str) -> ImageRecord:
    """``mxnet.recordio.unpack`` of one record; ``name`` is its file in error messages."""
    data = record.data
    where = record_where(name, record.index, record.offset)
    if len(data) < HEADER_SIZE:
        raise DataError(f"{where}: {len(data)} bytes, too short for the 24-byte image record header")
    flag, scalar, id, id2 = HEADER.unpack_from(data)
    if flag == 0:
        return ImageRecord(np.array([scalar], dtype=np.float32), id, id2, data[HEADER_SIZE:], scalar=True)
    end = HEADER_SIZE + 4 * flag
    if len(data) < end:
        raise DataError(f"{where}: the header announces {flag} label values ({4 * flag} bytes) but the record "
                        f"holds only {len(data) - HEADER_SIZE} bytes after its header")
    label = np.frombuffer(data, dtype="<f4", count=flag, offset=HEADER_SIZE).astype(np.float32)
    return ImageRecord(label, id, id2, data[end:])


# --- .idx ------------------------------------------------------------------------------------------
def read_index(path: Path) -> list[tuple[int, int]]:
    """(key, byte offset) per line of an .idx file, in the file's order."""
    entries = []
    for number, line in text_lines(path, "an .idx file ('key<TAB>byte offset' per line)"):
        if not line.strip():
            continue
        fields = line.split("\t") if "\t" in line else line.split()
        try:
            key, offset = int(fields[0]), int(fields[1])
            if offset < 0:
                raise ValueError
        except (ValueError, IndexError):
            raise DataError(f"{path}: line {number}: {line.rstrip()!r} is not 'key<TAB>byte offset'") from None
        entries.append((key, offset))
    return entries


def scan_offsets(path: Path, name: str | None = None) -> list[int]:
    """The byte offset of every record in ``path``, reading only the framing words (``name``: the
    file's name in errors, default its path)."""
    offsets = []
    with open(path, "rb") as stream:
        reader = RecordReader(stream, name or str(path))
        while (offset := reader.skip()) is not None:
            offsets.append(offset)
    return offsets
