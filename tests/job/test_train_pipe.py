"""Pipe mode emulated with real FIFOs: a writer thread plays SageMaker, creating
``/opt/ml/input/data/<channel>_<epoch>`` one pass after another (the next one late) and writing
the channel's bytes into it; the real ``container/train`` trains from them for two epochs."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from conftest import TINY_HYPERPARAMETERS, failure_reason, manifest_bytes, rec_bytes, run_train
from pipe_feeder import PipeFeeder

from sagedet.data.recordio import RecordWriter, pack
from sagedet.data.synthetic import write_synthetic_dataset
from sagedet.sagemaker.local import write_training_config
from sagedet.sagemaker.paths import SageMakerPaths

EPOCHS = 2


def pipe_job(root: Path, wrapper: str, content_type: str) -> SageMakerPaths:
    paths = SageMakerPaths(root / "opt_ml")
    channels = {name: {"ContentType": content_type, "TrainingInputMode": "Pipe",
                       "S3DistributionType": "FullyReplicated", "RecordWrapperType": wrapper}
                for name in ("train", "validation")}
    write_training_config(paths, {**TINY_HYPERPARAMETERS, "epochs": str(EPOCHS)}, channels)
    paths.data_dir.mkdir(parents=True, exist_ok=True)
    return paths


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("images")
    write_synthetic_dataset(root, "train", 24, seed=1, image_size=(80, 64))
    write_synthetic_dataset(root, "validation", 8, seed=2, image_size=(80, 64))
    return root


@pytest.mark.parametrize("data_format", ["recordio", "augmented-manifest"])
def test_trains_from_pipe_mode_fifos_over_two_epochs(tmp_path, images, data_format):
    if data_format == "recordio":
        paths = pipe_job(tmp_path, "None", "application/x-recordio")
        payloads = {name: rec_bytes(images, name) for name in ("train", "validation")}
    else:
        paths = pipe_job(tmp_path, "RecordIO", "application/x-image")
        payloads = {name: manifest_bytes(images, name) for name in ("train", "validation")}

    with PipeFeeder(paths.data_dir, payloads, passes=EPOCHS) as feeder:
        result = run_train(paths, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not paths.failure_file.exists()
    assert feeder.errors == []
    assert feeder.opened == {"train": EPOCHS, "validation": EPOCHS}  # one FIFO per epoch, each read to its end
    assert "streamed in Pipe mode" in result.stdout + result.stderr
    records = json.loads((paths.output_data_dir / "metrics.json").read_text())
    assert [r["epoch"] for r in records] == list(range(EPOCHS))
    assert all(0.0 <= r["validation_map"] <= 1.0 and r["train_loss"] > 0 for r in records)
    assert (paths.model_dir / "model.safetensors").is_file()
    names = json.loads((paths.model_dir / "model.json").read_text())["class_names"]
    # a streamed manifest's metadata attribute names its classes (its class-map), learned during the passes
    assert names == (["rectangle", "class_1", "class_2"] if data_format == "augmented-manifest" else
                     ["class_0", "class_1", "class_2"])


def test_a_bad_record_in_the_pipe_fails_the_job_naming_it(tmp_path, images):
    paths = pipe_job(tmp_path, "None", "application/x-recordio")
    good = rec_bytes(images, "train")
    out = io.BytesIO()
    writer = RecordWriter(out)
    writer.write(pack([2, 5, 0, 0.5, 0.5, 0.4, 0.9], b"\xff\xd8not really a jpeg"))  # xmax < xmin
    payloads = {"train": good + out.getvalue(), "validation": rec_bytes(images, "validation")}
    with PipeFeeder(paths.data_dir, payloads, passes=1):
        result = run_train(paths, timeout=300)
    assert result.returncode != 0
    reason = failure_reason(paths)
    assert f"train_0: record 24 (byte offset {len(good)})" in reason, reason
    assert "needs xmax > xmin" in reason
