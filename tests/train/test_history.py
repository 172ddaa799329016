import csv
import json
import math

import numpy as np
import pytest
from PIL import Image

from sagedet.train.history import FIELDS, EpochRecord, TrainingHistory


def record(epoch, validation_map=0.5, **overrides):
    values = dict(
        epoch=epoch,
        train_loss=3.0 / epoch,
        train_cross_entropy=2.0 / epoch,
        train_smooth_l1=1.0 / epoch,
        validation_map=validation_map,
        coco_ap=0.3,
        coco_ap50=0.55,
        learning_rate=0.001,
        images_per_second=42.5,
        seconds=12.0,
    )
    return EpochRecord(**{**values, **overrides})


def history():
    h = TrainingHistory()
    h.append(record(1, validation_map=math.nan, coco_ap=math.nan, coco_ap50=math.nan))
    h.append(record(2, validation_map=0.4))
    h.append(record(3, validation_map=0.6, train_loss=math.inf))
    return h


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    folder = tmp_path_factory.mktemp("output") / "data"
    history().write(folder)
    return folder


def test_write_json(written):
    rows = json.loads((written / "metrics.json").read_text())
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert list(rows[0]) == list(FIELDS)
    assert rows[0]["validation_map"] is None and rows[0]["coco_ap"] is None
    assert rows[1]["validation_map"] == 0.4 and rows[1]["train_loss"] == 1.5
    assert rows[2]["train_loss"] is None  # infinity, like NaN, is not JSON


def test_write_csv(written):
    with open(written / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and tuple(rows[0]) == FIELDS
    assert rows[0]["validation_map"] == "" and rows[0]["epoch"] == "1"
    assert float(rows[2]["validation_map"]) == 0.6 and float(rows[1]["images_per_second"]) == 42.5


def test_write_png(written):
    with Image.open(written / "training_curves.png") as png:
        assert png.format == "PNG"
        width, height = png.size
    assert 600 <= width <= 2000 and 250 <= height <= 1000 and width > height


def test_single_epoch_all_nan_quality_and_empty_history_do_not_crash(tmp_path):
    h = TrainingHistory([record(1, validation_map=math.nan, coco_ap=math.nan, coco_ap50=math.nan)])
    h.write(tmp_path / "one")
    TrainingHistory().write(tmp_path / "none")
    assert json.loads((tmp_path / "none" / "metrics.json").read_text()) == []
    assert (tmp_path / "none" / "training_curves.png").stat().st_size > 0


def test_rewrite_replaces_files_and_leaves_no_temporaries(tmp_path):
    h = history()
    h.write(tmp_path)
    h.append(record(4))
    h.write(tmp_path)
    assert len(json.loads((tmp_path / "metrics.json").read_text())) == 4
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["metrics.csv", "metrics.json", "training_curves.png"]


def test_list_round_trip_keeps_nan():
    h = history()
    rows = h.to_list()
    assert all(isinstance(r, dict) for r in rows)
    back = TrainingHistory.from_list(rows)
    assert [r.epoch for r in back.records] == [1, 2, 3]
    assert math.isnan(back.records[0].validation_map)
    assert back.records[1] == h.records[1]


def test_from_metrics_json_rows(written):
    back = TrainingHistory.from_list(json.loads((written / "metrics.json").read_text()))
    assert math.isnan(back.records[0].coco_ap) and back.records[1].validation_map == 0.4


def test_numpy_scalars_become_plain_numbers():
    r = record(np.int64(2), validation_map=np.float32(0.25))
    assert type(r.epoch) is int and type(r.validation_map) is float
