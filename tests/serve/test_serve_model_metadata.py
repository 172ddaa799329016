"""model.json's optional fields (nms_threshold, class_names) are checked when a model is loaded: a bad
value stops the server naming the file, key and value (sagedet.model.saved.load_detector)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from serve_harness import one_torch_thread, write_model  # noqa: F401

from sagedet.errors import ModelError
from sagedet.model.saved import load_detector
from sagedet.serve.predictor import Predictor

NMS = "a number in (0, 1], the overlap (IoU) above which NMS drops the lower-scoring of two boxes of a class"
NAMES = ("null or a list of at most num_classes=3 strings, the name of each class id from 0 (classes past the "
         "list's end are named by their ids)")


def with_metadata(model_dir: Path, **changes) -> Path:
    metadata_file = model_dir / "model.json"
    metadata = json.loads(metadata_file.read_text())
    metadata.update(changes)
    for key in [key for key, value in changes.items() if value is ...]:
        del metadata[key]
    metadata_file.write_text(json.dumps(metadata))
    return model_dir


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    write_model(tmp_path / "model")
    return tmp_path / "model"


@pytest.mark.parametrize("key, value, shown, allowed", [
    ("nms_threshold", "abc", "'abc'", NMS),
    ("nms_threshold", "0.45", "'0.45'", NMS),
    ("nms_threshold", 0, "0", NMS),
    ("nms_threshold", -0.5, "-0.5", NMS),
    ("nms_threshold", 1.5, "1.5", NMS),
    ("nms_threshold", True, "True", NMS),
    ("nms_threshold", None, "None", NMS),
    ("nms_threshold", float("nan"), "nan", NMS),
    ("class_names", 5, "5", NAMES),
    ("class_names", "rectangle", "'rectangle'", NAMES),
    ("class_names", {"0": "rectangle", "1": "ellipse", "2": "triangle"},
     "{'0': 'rectangle', '1': 'ellipse', '2': 'triangle'}", NAMES),
    ("class_names", ["rectangle", 1, "triangle"], "['rectangle', 1, 'triangle']", NAMES),
    ("class_names", ["background", "rectangle", "ellipse", "triangle"],
     "['background', 'rectangle', 'ellipse', 'triangle']", NAMES),
    ("class_names", [f"class {i}" for i in range(40)], "['class 0', 'class 1', 'class 2', 'class 3', 'class 4', "
                                                       "'class 5', 'class 6',...", NAMES),  # the value cut short
])
def test_a_bad_optional_field_is_refused_naming_the_file_key_and_value(model_dir: Path, key, value, shown, allowed):
    with_metadata(model_dir, **{key: value})
    message = f"{model_dir / 'model.json'}: {key} {shown}: expected {allowed}"
    for load in (load_detector, lambda folder: Predictor.load(folder, "cpu", inference_path="eager")):
        with pytest.raises(ModelError, match=f"^{re.escape(message)}"):
            load(model_dir)


@pytest.mark.parametrize("changes, nms_threshold, class_names", [
    ({}, 0.45, ["rectangle", "ellipse", "triangle"]),
    ({"nms_threshold": ..., "class_names": ...}, 0.45, ["0", "1", "2"]),
    ({"nms_threshold": 1, "class_names": None}, 1.0, ["0", "1", "2"]),
    ({"nms_threshold": 0.01, "class_names": ["rectangle"]}, 0.01, ["rectangle", "1", "2"]),
    ({"class_names": []}, 0.45, ["0", "1", "2"]),
])
def test_good_optional_fields_load(model_dir: Path, changes: dict, nms_threshold: float, class_names: list[str]):
    predictor = Predictor.load(with_metadata(model_dir, **changes), "cpu", inference_path="eager")
    assert predictor.nms_threshold == nms_threshold and predictor.class_names == class_names


@pytest.mark.parametrize("key, value", [("num_classes", 3.7), ("num_classes", True), ("num_classes", "3"),
                                        ("num_classes", 0), ("image_shape", 64.5), ("image_shape", None)])
def test_the_class_count_and_side_are_whole_numbers_not_truncated(model_dir: Path, key, value):
    """3.7 classes was read as 3 (int()); now every non-integer is refused, naming the key and value."""
    with pytest.raises(ModelError, match=re.escape(f"two integers >= 1 (ValueError: {key} is {value!r})")
                       if value is not None else "two integers >= 1"):
        load_detector(with_metadata(model_dir, **{key: value}))


def test_a_whole_float_class_count_loads(model_dir: Path):
    model, _ = load_detector(with_metadata(model_dir, num_classes=3.0, image_shape=64.0))
    assert model.image_shape == 64
