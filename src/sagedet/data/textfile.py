"""The text files of the data formats (manifests, .idx and .lst files, class lists, YOLO labels) are
UTF-8: a file that is not, or cannot be read, is a :class:`~sagedet.errors.DataError` naming the file,
the line and the byte at fault and what the file must hold, not a bare ``UnicodeDecodeError``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ..errors import DataError


def _not_utf8(name: str, number: int, offset: int, byte: int, what: str) -> DataError:
    return DataError(f"{name}: line {number}: byte 0x{byte:02x} at byte offset {offset} is not UTF-8; {what} must be "
                     "UTF-8 text")


def _unreadable(name: str, error: OSError) -> DataError:
    return DataError(f"{name}: cannot be read ({error.strerror or error})")


def text_lines(path: Path, what: str, name: str | None = None) -> Iterator[tuple[int, str]]:
    """(line number from 1, text with its newline) for each line of ``path``, one line in memory at a
    time; ``what`` says what the file is in errors (``"a manifest (JSON lines)"``), ``name`` how errors
    name the file (default its path)."""
    name = name or str(path)
    offset = 0
    try:
        with open(path, "rb") as lines:
            for number, line in enumerate(lines, 1):
                try:
                    text = line.decode("utf-8")
                except UnicodeDecodeError as error:
                    raise _not_utf8(name, number, offset + error.start, line[error.start], what) from None
                yield number, text
                offset += len(line)
    except OSError as error:
        raise _unreadable(name, error) from None


def read_text(path: Path, what: str, name: str | None = None) -> str:
    """The whole of ``path`` as UTF-8 text (errors as :func:`text_lines`')."""
    name = name or str(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise _unreadable(name, error) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _not_utf8(name, data.count(b"\n", 0, error.start) + 1, error.start, data[error.start], what) from None
