"""Write a local /opt/ml tree as SageMaker lays it out for a training job.

Used by ``make demo``, by the tests that run the real ``train`` entrypoint, and by anyone who wants
to try the container without SageMaker: hyperparameters and input data config as SageMaker writes
them (every hyperparameter value a string), channel folders under ``input/data``.
"""

from __future__ import annotations

import json
from pathlib import Path

from .paths import SageMakerPaths

IMAGE_CHANNELS = ("train", "validation", "train_annotation", "validation_annotation")


def write_training_config(paths: SageMakerPaths, hyperparameters: dict, channels: dict[str, dict] | None = None,
                          hosts: tuple[str, ...] = ("algo-1",), current_host: str = "algo-1") -> None:
    """hyperparameters.json (values as strings), inputdataconfig.json and resourceconfig.json."""
    paths.config_dir.mkdir(parents=True, exist_ok=True)
    if channels is None:
        channels = {name: {"ContentType": "image/jpeg", "TrainingInputMode": "File",
                           "S3DistributionType": "FullyReplicated", "RecordWrapperType": "None"}
                    for name in IMAGE_CHANNELS}
    as_strings = {key: value if isinstance(value, str) else json.dumps(value) for key, value in hyperparameters.items()}
    paths.hyperparameters_file.write_text(json.dumps(as_strings, indent=2))
    paths.input_data_config_file.write_text(json.dumps(channels, indent=2))
    paths.resource_config_file.write_text(json.dumps(
        {"current_host": current_host, "hosts": list(hosts), "network_interface_name": "eth0"}, indent=2))
    for directory in (paths.model_dir, paths.output_data_dir, paths.checkpoint_dir):
        directory.mkdir(parents=True, exist_ok=True)
