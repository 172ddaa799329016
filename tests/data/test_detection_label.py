"""The im2rec / GluonCV detection label inside RecordIO image records (sagedet.data.detection_label),
alone and as the training sources meet it in hand-built .rec files."""

from __future__ import annotations

import io

import numpy as np
import pytest

from rec_bytes import LABEL_A2, LABEL_A4, LABEL_B6, TWO_OBJECTS, image_record, rec_file, scalar_record, write_rec
from sagedet.data.detection_label import format_detection_label, parse_detection_label
from sagedet.data.recordio_source import RecordIOSource, stream_samples
from sagedet.data.sample import Objects
from sagedet.errors import DataError

BOXES = np.array([row[1:] for row in TWO_OBJECTS], np.float32)
LABELS = [0, 2]


def parse(label, num_classes=3, label_width=None) -> Objects:
    return parse_detection_label(np.array(label, np.float32), "x.rec: record 4 (byte offset 96)", num_classes,
                                 label_width)


def parse_error(label, num_classes=3, label_width=None) -> str:
    with pytest.raises(DataError) as caught:
        parse(label, num_classes, label_width)
    message = str(caught.value)
    assert message.startswith("x.rec: record 4 (byte offset 96): ")
    return message


@pytest.mark.parametrize("label", [
    LABEL_A2, LABEL_A4, LABEL_B6,
    LABEL_A2 + [-1] * 15,  # whole padding rows
    LABEL_A2 + [-1] * 3,  # a trailing partial row of -1
    LABEL_A2 + [-1] * (350 - len(LABEL_A2)),  # MXNet's detection iterator's padding to label_width
    LABEL_B6 + [-1] * 6,
], ids=["A2-B5", "A4-width-height", "B6-extra-column", "padding-rows", "partial-padding", "padded-to-350",
        "B6-padding"])
def test_layouts_give_the_same_objects(label):
    objects = parse(label, label_width=350)
    np.testing.assert_allclose(objects.boxes, BOXES, atol=1e-7)
    assert objects.boxes.dtype == np.float32 and objects.labels.dtype == np.int64
    assert objects.labels.tolist() == LABELS


def test_a_label_with_no_objects_is_a_negative_example():
    for label in ([2, 5], [4, 5, 640, 480], [2, 5, -1, -1, -1, -1, -1]):
        objects = parse(label)
        assert objects.boxes.shape == (0, 4) and objects.labels.shape == (0,)


def test_corners_a_rounding_error_outside_are_clipped():
    objects = parse([2, 5, 1, -0.00005, 0.2, 1.00005, 0.6])
    np.testing.assert_allclose(objects.boxes, [[0.0, 0.2, 1.0, 0.6]], atol=1e-7)


def test_padding_does_not_count_against_label_width():
    assert len(parse(LABEL_A2 + [-1] * 100, label_width=12).labels) == 2
    message = parse_error(LABEL_A2, label_width=11)
    assert "2 objects take 12 label values (A=2 + B=5 x 2), more than label_width=11" in message
    assert "at least 12" in message


@pytest.mark.parametrize("label, problem", [
    ([5], "the label holds 1 value(s)"),
    ([1, 5, 0, 0.1, 0.1, 0.5, 0.5], "header width A = 1"),
    ([2.5, 5, 0, 0.1, 0.1, 0.5, 0.5], "header width A = 2.5"),
    ([9, 5, 0, 0.1], "header width A = 9 (label[0]) must be a whole number from 2 to the label's 4 values"),
    ([2, 4, 0, 0.1, 0.1, 0.5], "object width B = 4"),
    ([2, 5.5, 0, 0.1, 0.1, 0.5, 0.5], "object width B = 5.5"),
    ([2, 5, 0, 0.1, 0.1, 0.5, 0.5, 1, 0.2], "7 values after the 2-value header do not make whole objects of B = 5"),
    ([2, 5, 0, -0.1, 0.1, 0.5, 0.5], "object 0 has box [-0.1, 0.1, 0.5, 0.5]"),
    ([2, 5, 0, 0.1, 0.1, 0.5, 0.5, 1, 0.1, 0.1, 1.2, 0.5], "object 1 has box [0.1, 0.1, 1.2, 0.5]"),
    ([2, 5, 0, 0.5, 0.1, 0.5, 0.6],
     "object 0 has box [0.5, 0.1, 0.5, 0.6] (xmin, ymin, xmax, ymax); needs xmax > xmin"),
    ([2, 5, 0, 0.5, 0.1, 0.4, 0.6], "needs xmax > xmin"),
    ([2, 5, 0, 0.1, 0.6, 0.5, 0.2], "needs xmax > xmin and ymax > ymin"),
    ([2, 5, 3, 0.1, 0.1, 0.5, 0.5], "object 0 has class_id 3; allowed: whole numbers from 0 to 2 (num_classes=3)"),
    ([2, 5, 1.5, 0.1, 0.1, 0.5, 0.5], "object 0 has class_id 1.5"),
    ([2, 5, -2, 0.1, 0.1, 0.5, 0.5], "object 0 has class_id -2"),
], ids=["A-missing", "A<2", "A-not-whole", "A-past-the-end", "B<5", "B-not-whole", "not-whole-objects",
        "box-negative", "box-past-1", "xmax=xmin", "xmax<xmin", "ymax<ymin", "class-too-high", "class-not-whole",
        "class-negative"])
def test_a_bad_label_names_the_record_and_the_problem(label, problem):
    assert problem in parse_error(label)


@pytest.mark.parametrize("label", [[float("nan"), 5, 0, 0.1, 0.1, 0.5, 0.5], [float("inf"), 5],
                                   [2, float("nan"), 0, 0.1, 0.1, 0.5, 0.5]], ids=["A-nan", "A-inf", "B-nan"])
def test_a_non_finite_header_is_a_data_error(label):
    assert "must be a whole number" in parse_error(label)


def test_format_writes_the_layouts():
    objects = Objects(BOXES, np.array(LABELS))
    np.testing.assert_array_equal(format_detection_label(objects), np.array(LABEL_A2, np.float32))
    np.testing.assert_array_equal(format_detection_label(objects, (640, 480)), np.array(LABEL_A4, np.float32))
    np.testing.assert_array_equal(format_detection_label(objects, extra_columns=1),
                                  np.array([2, 6, *TWO_OBJECTS[0], 0, *TWO_OBJECTS[1], 0], np.float32))
    empty = Objects(np.zeros((0, 4), np.float32), np.zeros(0, np.int64))
    assert format_detection_label(empty).tolist() == [2, 5]
    assert parse(format_detection_label(objects, (640, 480))).labels.tolist() == LABELS


# --- as the training sources meet them: errors name the file, the record index and its byte offset ---
BAD_LABELS = [
    ([1, 5, 0, 0.1, 0.1, 0.5, 0.5], "header width A = 1"),
    ([2, 5, 0, 0.1, 0.1, 0.5, 0.5, 1], "do not make whole objects"),
    ([2, 5, 0, 0.1, 0.1, 1.5, 0.5], "corners are normalized, within [0, 1]"),
    ([2, 5, 0, 0.5, 0.1, 0.2, 0.5], "needs xmax > xmin"),
    ([2, 5, 7, 0.1, 0.1, 0.5, 0.5], "class_id 7"),
    (LABEL_A2 + LABEL_A2[2:] * 80, "more than label_width=350"),
]


@pytest.mark.parametrize("label, problem", BAD_LABELS, ids=[p for _, p in BAD_LABELS])
def test_record_io_source_names_the_record_of_a_bad_label(tmp_path, label, problem):
    starts = write_rec(tmp_path / "train" / "x.rec", image_record(LABEL_A2), image_record(label))
    with pytest.raises(DataError) as caught:
        RecordIOSource(tmp_path / "train", 3, 350, "train")
    assert f"train/x.rec: record 1 (byte offset {starts[1]}): " in str(caught.value)
    assert problem in str(caught.value)


@pytest.mark.parametrize("label, problem", BAD_LABELS, ids=[p for _, p in BAD_LABELS])
def test_a_stream_names_the_record_of_a_bad_label(label, problem):
    data = rec_file(image_record(LABEL_A2), image_record(label))
    samples = stream_samples(io.BytesIO(data), "train_0", 3, 350)
    assert next(samples).objects.labels.tolist() == LABELS
    with pytest.raises(DataError) as caught:
        next(samples)
    assert f"train_0: record 1 (byte offset {len(rec_file(image_record(LABEL_A2)))}): " in str(caught.value)
    assert problem in str(caught.value)


@pytest.mark.parametrize("index", [False, True], ids=["scanned", "with-idx"])
def test_a_scalar_label_is_refused_as_a_classification_record(tmp_path, index):
    starts = write_rec(tmp_path / "train" / "x.rec", image_record(LABEL_A2), scalar_record(3.0), index=index)
    with pytest.raises(DataError) as caught:
        RecordIOSource(tmp_path / "train", 3, 350, "train")
    message = str(caught.value)
    assert f"train/x.rec: record 1 (byte offset {starts[1]}): has a scalar label" in message
    assert "im2rec --pack-label" in message
    with pytest.raises(DataError, match=r"train_0: record 1 .*: has a scalar label \(3\) in its header"):
        list(stream_samples(io.BytesIO(rec_file(image_record(LABEL_A2), scalar_record(3.0))), "train_0", 3, 350))
