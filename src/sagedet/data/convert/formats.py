"""The formats by name, and a conversion from one to another through the common in-memory form."""

from __future__ import annotations

from pathlib import Path

from ...errors import DataError
from . import coco, imagejson, manifest, recordio, voc, yolo
from .dataset import Dataset, Options, read_class_list

MODULES = {"coco": coco, "voc": voc, "yolo": yolo, "manifest": manifest, "imagejson": imagejson,
           "recordio": recordio}
"""Each format's module, with ``read(src, options) -> Dataset`` and ``write(dataset, dst, options) -> paths``."""


def read(format_name: str, src: Path, options: Options) -> Dataset:
    """The data set at ``src`` in ``format_name``; ``--classes`` replaces the names it carries."""
    dataset = MODULES[format_name].read(Path(src), options)
    if options.classes is not None:
        dataset.class_names = read_class_list(options.classes)
    return dataset


def convert(source_format: str, target_format: str, src: Path, dst: Path,
            options: Options) -> tuple[Dataset, list[Path]]:
    """Reads ``src`` and writes it as ``dst``; returns the data set and the paths written."""
    for name in (source_format, target_format):
        if name not in MODULES:
            raise DataError(f"unknown data set format {name!r}; formats: {', '.join(MODULES)}")
    if Path(src).resolve() == Path(dst).resolve():
        raise DataError(f"the source and the destination are the same ({src})")
    dataset = read(source_format, src, options)
    if not dataset.items:
        raise DataError(f"{src} holds no images")
    return dataset, MODULES[target_format].write(dataset, Path(dst), options)
