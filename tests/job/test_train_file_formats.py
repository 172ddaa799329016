"""The real ``container/train`` on File-mode RecordIO and augmented-manifest channels."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import TINY_HYPERPARAMETERS, failure_reason, rec_bytes, run_train

from sagedet.data.synthetic import write_synthetic_dataset
from sagedet.sagemaker.local import write_training_config
from sagedet.sagemaker.paths import SageMakerPaths


def file_job(root: Path, content_type: str) -> SageMakerPaths:
    paths = SageMakerPaths(root / "opt_ml")
    channels = {name: {"ContentType": content_type, "TrainingInputMode": "File",
                       "S3DistributionType": "FullyReplicated", "RecordWrapperType": "None"}
                for name in ("train", "validation")}
    write_training_config(paths, TINY_HYPERPARAMETERS, channels)
    return paths


def generated(root: Path) -> Path:
    images = root / "generated"
    write_synthetic_dataset(images, "train", 24, seed=1, image_size=(80, 64))
    write_synthetic_dataset(images, "validation", 8, seed=2, image_size=(80, 64))
    return images


def test_trains_from_rec_files(tmp_path):
    images = generated(tmp_path)
    paths = file_job(tmp_path, "application/x-recordio")
    for channel in ("train", "validation"):
        paths.channel_dir(channel).mkdir(parents=True)
        (paths.channel_dir(channel) / f"{channel}.rec").write_bytes(rec_bytes(images, channel))
    result = run_train(paths, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "data: 24 training and 8 validation images (recordio)" in result.stdout + result.stderr
    assert (paths.model_dir / "model.safetensors").is_file()


def test_a_bad_record_fails_before_training_naming_file_record_and_offset(tmp_path):
    images = generated(tmp_path)
    paths = file_job(tmp_path, "application/x-recordio")
    good = rec_bytes(images, "train")
    for channel in ("train", "validation"):
        paths.channel_dir(channel).mkdir(parents=True)
        (paths.channel_dir(channel) / f"{channel}.rec").write_bytes(rec_bytes(images, channel))
    (paths.channel_dir("train") / "train.rec").write_bytes(good[:-10])  # truncated
    result = run_train(paths, timeout=300)
    assert result.returncode == 1
    reason = failure_reason(paths)
    assert "train/train.rec: record 23 (byte offset" in reason and "truncated file" in reason, reason


def test_trains_from_a_file_mode_manifest(tmp_path):
    images = generated(tmp_path)
    paths = SageMakerPaths(tmp_path / "opt_ml")
    write_training_config(paths, TINY_HYPERPARAMETERS, {
        name: {"ContentType": "application/x-recordio", "TrainingInputMode": "File",
               "S3DistributionType": "FullyReplicated", "RecordWrapperType": "RecordIO"}
        for name in ("train", "validation")})
    for channel in ("train", "validation"):
        folder = paths.channel_dir(channel)
        (folder / "images").mkdir(parents=True)
        lines = []
        for annotation in sorted((images / f"{channel}_annotation").glob("*.json")):
            document = json.loads(annotation.read_text())
            image = images / channel / document["file"]
            (folder / "images" / image.name).write_bytes(image.read_bytes())
            lines.append(json.dumps({
                "source-ref": f"s3://bucket/job/images/{image.name}",
                "boxes": {"image_size": document["image_size"], "annotations": document["annotations"]},
                "boxes-metadata": {"class-map": {"0": "rectangle", "1": "ellipse", "2": "triangle"}}}))
        (folder / "output.manifest").write_text("\n".join(lines) + "\n")
    result = run_train(paths, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "data: 24 training and 8 validation images (augmented-manifest)" in result.stdout + result.stderr
    metadata = json.loads((paths.model_dir / "model.json").read_text())
    assert metadata["class_names"] == ["rectangle", "ellipse", "triangle"]
