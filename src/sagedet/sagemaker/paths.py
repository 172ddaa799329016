"""The /opt/ml tree SageMaker mounts into the container.

The root is ``/opt/ml`` unless the environment variable ``SAGEDET_OPT_ML`` names another folder, so
that tests and ``make demo`` run the real entrypoints without Docker. Nothing past the
``sagemaker`` package builds an /opt/ml path by hand: it receives a :class:`SageMakerPaths`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ROOT_ENV = "SAGEDET_OPT_ML"
DEFAULT_ROOT = "/opt/ml"


@dataclass(frozen=True)
class SageMakerPaths:
    root: Path

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "SageMakerPaths":
        env = os.environ if environ is None else environ
        return cls(Path(env.get(ROOT_ENV) or DEFAULT_ROOT))

    # input/config
    @property
    def config_dir(self) -> Path:
        return self.root / "input" / "config"

    @property
    def hyperparameters_file(self) -> Path:
        return self.config_dir / "hyperparameters.json"

    @property
    def input_data_config_file(self) -> Path:
        return self.config_dir / "inputdataconfig.json"

    @property
    def resource_config_file(self) -> Path:
        return self.config_dir / "resourceconfig.json"

    # input/data
    @property
    def data_dir(self) -> Path:
        return self.root / "input" / "data"

    def channel_dir(self, channel: str) -> Path:
        return self.data_dir / channel

    # outputs
    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def output_dir(self) -> Path:
        return self.root / "output"

    @property
    def output_data_dir(self) -> Path:
        return self.output_dir / "data"

    @property
    def failure_file(self) -> Path:
        return self.output_dir / "failure"

    @property
    def checkpoint_dir(self) -> Path:
        return self.root / "checkpoints"
