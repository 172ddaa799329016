"""The detection label layout of im2rec ``--pack-label`` and GluonCV, inside a RecordIO image record.

``[A, B, <A - 2 extra header values>, then B values per object]``, each object ``class_id, xmin,
ymin, xmax, ymax`` normalized to [0, 1] and ``B - 5`` extra columns (difficult flags and the like,
ignored). A >= 2 (SageMaker's notebooks use 2; GluonCV's tutorial 4, with the image's width and
height), B >= 5. Rows whose class_id is -1 are padding (MXNet's detection iterator pads to
``label_width`` with -1), and so is an incomplete trailing row of -1 values.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import DataError
from .sample import Objects

PADDING = -1.0
BOX_TOLERANCE = 1e-4
"""Corners up to this far outside [0, 1] (float rounding in the tools that wrote them) are clipped."""


def parse_detection_label(label: np.ndarray, where: str, num_classes: int, label_width: int | None = None) -> Objects:
    """The objects of one record's label array; ``where`` names the record in errors (file, record
    index, byte offset). ``label_width`` is the built-in's hyperparameter: the most label values
    (A + B × objects) a record may hold."""
    values = np.asarray(label, dtype=np.float64).ravel()
    if values.size < 2:
        raise DataError(f"{where}: the label holds {values.size} value(s); a detection label starts with the "
                        "header width A and the object width B ([A, B, ..., class_id, xmin, ymin, xmax, ymax, ...]) "
                        "- is this a classification record?")
    header_width, object_width = values[0], values[1]
    if not np.isfinite(header_width) or header_width != int(header_width) or not 2 <= header_width <= values.size:
        raise DataError(f"{where}: header width A = {header_width:g} (label[0]) must be a whole number from 2 to the "
                        f"label's {values.size} values")
    if not np.isfinite(object_width) or object_width != int(object_width) or object_width < 5:
        raise DataError(f"{where}: object width B = {object_width:g} (label[1]) must be a whole number >= 5 "
                        "(class_id, xmin, ymin, xmax, ymax, then any extra columns)")
    a, b = int(header_width), int(object_width)
    body = values[a:]
    rows = body.size // b
    tail = body[rows * b:]
    if tail.size and not np.all(tail == PADDING):
        raise DataError(f"{where}: {body.size} values after the {a}-value header do not make whole objects of "
                        f"B = {b} values (label: {_short(values)})")
    table = body[:rows * b].reshape(rows, b)
    table = table[table[:, 0] != PADDING]
    used = a + b * len(table)
    if label_width is not None and used > label_width:
        raise DataError(f"{where}: {len(table)} objects take {used} label values (A={a} + B={b} x {len(table)}), "
                        f"more than label_width={label_width}; raise the label_width hyperparameter to at least {used}")
    class_ids = table[:, 0]
    bad_class = (class_ids != np.round(class_ids)) | (class_ids < 0) | (class_ids >= num_classes)
    if bad_class.any():
        row = int(np.argmax(bad_class))
        raise DataError(f"{where}: object {row} has class_id {class_ids[row]:g}; allowed: whole numbers from 0 to "
                        f"{num_classes - 1} (num_classes={num_classes})")
    boxes = table[:, 1:5]
    outside = ((boxes < -BOX_TOLERANCE) | (boxes > 1 + BOX_TOLERANCE) | ~np.isfinite(boxes)).any(axis=1)
    if outside.any():
        row = int(np.argmax(outside))
        raise DataError(f"{where}: object {row} has box {_box(boxes[row])}; corners are normalized, within [0, 1]")
    boxes = boxes.clip(0.0, 1.0)
    empty = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
    if empty.any():
        row = int(np.argmax(empty))
        raise DataError(f"{where}: object {row} has box {_box(boxes[row])}; needs xmax > xmin and ymax > ymin")
    return Objects(boxes.astype(np.float32), class_ids.astype(np.int64))


def format_detection_label(objects: Objects, extra_header: Sequence[float] = (),
                           extra_columns: int = 0) -> np.ndarray:
    """The label array for ``objects``: A = 2 + len(extra_header), B = 5 + extra_columns (filled
    with 0)."""
    a, b = 2 + len(extra_header), 5 + extra_columns
    table = np.zeros((len(objects.labels), b), dtype=np.float32)
    table[:, 0] = objects.labels
    table[:, 1:5] = objects.boxes
    return np.concatenate([np.array([a, b, *extra_header], dtype=np.float32), table.ravel()])


def _box(box: np.ndarray) -> str:
    return "[" + ", ".join(f"{v:.6g}" for v in box) + "] (xmin, ymin, xmax, ymax)"


def _short(values: np.ndarray, limit: int = 16) -> str:
    shown = ", ".join(f"{v:g}" for v in values[:limit])
    return f"[{shown}{', ...' if values.size > limit else ''}]"
