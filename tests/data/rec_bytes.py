"""MXNet RecordIO bytes built by hand with ``struct``, independently of :mod:`sagedet.data.recordio`,
as dmlc-core's ``RecordIOWriter`` and ``mxnet.recordio.pack`` lay them out (little-endian)."""

from __future__ import annotations

import io
import struct
from pathlib import Path

from PIL import Image

MAGIC = 0xCED7230A
MAGIC_BYTES = b"\x0a\x23\xd7\xce"  # the magic word as it lies in a little-endian file


def part(data: bytes, cflag: int = 0) -> bytes:
    """One framed part: magic, ``cflag << 29 | length``, the bytes, zero padding to 4 bytes."""
    return struct.pack("<II", MAGIC, cflag << 29 | len(data)) + data + b"\0" * (-len(data) % 4)


def image_record(label: list[float], image: bytes = b"IMG", id: int = 0, id2: int = 0) -> bytes:
    """An image record with a label array: header ``IfQQ`` (flag = label count, 0.0, id, id2), the
    float32 labels, the image bytes."""
    return struct.pack("<IfQQ", len(label), 0.0, id, id2) + struct.pack(f"<{len(label)}f", *label) + image


def scalar_record(label: float, image: bytes = b"IMG", id: int = 0) -> bytes:
    """An image record with a scalar label in its header (flag 0), as classification .rec files hold."""
    return struct.pack("<IfQQ", 0, label, id, 0) + image


def rec_file(*records: bytes) -> bytes:
    """Whole records (cflag 0), one after another."""
    return b"".join(part(record) for record in records)


def offsets(*records: bytes) -> list[int]:
    """The byte offset of each whole record in ``rec_file(*records)``."""
    starts, at = [], 0
    for record in records:
        starts.append(at)
        at += len(part(record))
    return starts


def write_rec(path: Path, *records: bytes, index: bool = False) -> list[int]:
    """Writes ``records`` as ``path`` (and ``path``.idx with keys 0, 1, ... when ``index``); their offsets."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(rec_file(*records))
    starts = offsets(*records)
    if index:
        path.with_suffix(".idx").write_text("".join(f"{key}\t{offset}\n" for key, offset in enumerate(starts)))
    return starts


def encoded_image(width: int = 40, height: int = 30, image_format: str = "PNG", color=(200, 40, 40)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, image_format)
    return out.getvalue()


# A detection label with A = 2, B = 5 and two objects, and the same objects in the other layouts.
TWO_OBJECTS = [[0, 0.1, 0.2, 0.5, 0.6], [2, 0.3, 0.35, 0.9, 0.95]]
LABEL_A2 = [2, 5, *TWO_OBJECTS[0], *TWO_OBJECTS[1]]
LABEL_A4 = [4, 5, 640, 480, *TWO_OBJECTS[0], *TWO_OBJECTS[1]]
LABEL_B6 = [2, 6, *TWO_OBJECTS[0], 1, *TWO_OBJECTS[1], 0]
