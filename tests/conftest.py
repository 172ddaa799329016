"""Helpers for tests that run the real ``container/train`` entrypoint on a temporary /opt/ml tree."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sagedet.data.detection_label import format_detection_label
from sagedet.data.imagejson import ImageJsonSource
from sagedet.data.recordio import RecordWriter, pack
from sagedet.data.synthetic import write_synthetic_dataset
from sagedet.sagemaker.local import write_training_config
from sagedet.sagemaker.paths import SageMakerPaths

REPO = Path(__file__).resolve().parents[1]
TRAIN_ENTRYPOINT = REPO / "container" / "train"

# A job small enough to train in seconds on a CPU.
TINY_HYPERPARAMETERS = {
    "num_classes": "3", "num_training_samples": "24", "base_network": "mobilenet-v3",
    "use_pretrained_model": "0", "image_shape": "64", "epochs": "1", "mini_batch_size": "8",
    "optimizer": "adam", "learning_rate": "0.003",
}


def make_job(root: Path, hyperparameters: dict | None = None, train: int = 24, validation: int = 8,
             image_size: tuple[int, int] = (80, 64)) -> SageMakerPaths:
    """A /opt/ml tree with generated image+JSON channels and the given hyperparameters."""
    paths = SageMakerPaths(root)
    write_synthetic_dataset(paths.data_dir, "train", train, seed=1, image_size=image_size)
    write_synthetic_dataset(paths.data_dir, "validation", validation, seed=2, image_size=image_size)
    write_training_config(paths, TINY_HYPERPARAMETERS if hyperparameters is None else hyperparameters)
    return paths


def set_hyperparameters(paths: SageMakerPaths, **changes: str) -> None:
    values = json.loads(paths.hyperparameters_file.read_text())
    values.update(changes)
    paths.hyperparameters_file.write_text(json.dumps(values))


def train_env(paths: SageMakerPaths, **extra: str) -> dict[str, str]:
    env = dict(os.environ, SAGEDET_OPT_ML=str(paths.root), SAGEDET_DATA_WORKERS="1", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def run_train(paths: SageMakerPaths, timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
    """Run ``container/train`` as SageMaker would, with /opt/ml at ``paths.root``."""
    return subprocess.run([sys.executable, str(TRAIN_ENTRYPOINT)], env=train_env(paths, **env),
                          capture_output=True, text=True, timeout=timeout)


def failure_reason(paths: SageMakerPaths) -> str:
    assert paths.failure_file.is_file(), "no failure file was written"
    return paths.failure_file.read_text()


@pytest.fixture
def job(tmp_path: Path) -> SageMakerPaths:
    return make_job(tmp_path / "opt_ml")


# --- the generated data in the other training formats ------------------------------------------
def rec_bytes(image_root: Path, channel: str) -> bytes:
    """The channel's generated images and objects as a .rec file (A=2, B=5)."""
    source = ImageJsonSource(image_root / channel, image_root / f"{channel}_annotation", 3, channel)
    out = io.BytesIO()
    writer = RecordWriter(out)
    for i in range(len(source)):
        raw = source.read(i)
        writer.write(pack(format_detection_label(raw.objects), raw.image_bytes, id=i))
    return out.getvalue()


def manifest_bytes(image_root: Path, channel: str) -> bytes:
    """The channel as SageMaker streams an augmented manifest with RecordWrapperType RecordIO: for
    each line the image's bytes, then the label attribute's JSON, then its metadata's JSON."""
    out = io.BytesIO()
    writer = RecordWriter(out)
    for annotation in sorted((image_root / f"{channel}_annotation").glob("*.json")):
        document = json.loads(annotation.read_text())
        writer.write((image_root / channel / document["file"]).read_bytes())
        writer.write(json.dumps({"image_size": document["image_size"],
                                 "annotations": document["annotations"]}).encode())
        writer.write(json.dumps({"class-map": {"0": "rectangle"}, "type": "groundtruth/object-detection"}).encode())
    return out.getvalue()


CUDA13_ARCHES = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]  # torch 2.14.1+cu130's get_arch_list()


def fake_gpus(monkeypatch, count: int, capability: tuple[int, int] = (9, 0), usable: bool = True,
              name: str = "NVIDIA H100 80GB HBM3", arches: list[str] = CUDA13_ARCHES) -> None:
    """This machine seen as one with ``count`` GPUs, as torch.cuda's queries answer (this project's
    machines have none): NVML's count, whether CUDA starts (``usable``), each GPU's capability and name."""
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: usable and count > 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: list(arches))
