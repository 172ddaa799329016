"""The one sample shape every input format yields (image+JSON now; RecordIO and manifests later).

A *source* knows how to list samples and read each one's encoded image bytes and its objects. It
does not decode images: decoding, the 3-channel check and augmentation happen in
:mod:`sagedet.data.dataset`, inside DataLoader workers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Objects:
    """The annotated objects of one image.

    boxes: float32 array (N, 4) of xmin, ymin, xmax, ymax normalized to [0, 1] by the image's width
    and height; labels: int64 array (N,) of class ids in [0, num_classes).
    """

    boxes: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        if self.boxes.shape != (len(self.labels), 4):
            raise ValueError(f"boxes {self.boxes.shape} do not match labels {self.labels.shape}")


@dataclass(frozen=True)
class RawSample:
    """Encoded image bytes and their objects; ``name`` says where it came from in error messages."""

    name: str
    image_bytes: bytes
    objects: Objects


class SampleSource(Protocol):
    """A random-access collection of raw samples (one channel of training data)."""

    class_names: dict[int, str]

    def __len__(self) -> int: ...

    def name(self, index: int) -> str:
        """The file or record that sample ``index`` comes from, for error messages."""
        ...

    def read(self, index: int) -> RawSample: ...



MAX_REPORTED = 20
"""Problems listed in one error; the rest are counted."""


def problems_report(problems: list[str], what: str) -> str:
    """One message for every problem found in ``what`` (e.g. "the train data")."""
    shown = "\n".join(problems[:MAX_REPORTED])
    more = f"\n... and {len(problems) - MAX_REPORTED} more" if len(problems) > MAX_REPORTED else ""
    return f"{len(problems)} problem(s) in {what}:\n{shown}{more}"


@dataclass(frozen=True)
class ImageFile:
    """One indexed image file: its name in messages, its path and its objects."""

    name: str
    path: Path
    objects: Objects


class ImageFiles:
    """A source whose samples are image files indexed up front (image+JSON, File-mode manifests)."""

    class_names: dict[int, str]
    _entries: list[ImageFile]

    def __len__(self) -> int:
        return len(self._entries)

    def name(self, index: int) -> str:
        return self._entries[index].name

    def read(self, index: int) -> RawSample:
        entry = self._entries[index]
        return RawSample(entry.name, entry.path.read_bytes(), entry.objects)
