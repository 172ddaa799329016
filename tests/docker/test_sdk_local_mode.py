"""The image under the SageMaker Python SDK's local mode (v2, in its own virtual environment):
`Estimator(image_uri=..., instance_type="local")`, fit on file:// channels, deploy to "local" and
predict, then a local batch transform, all through examples/sagemaker_sdk.py with dummy AWS credentials and docker compose.
`make docker-test` sets SAGEDET_SDK_PYTHON to that environment's Python; without it this is skipped."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from .docker_harness import docker, outcome

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]
SDK_ENV = "SAGEDET_SDK_PYTHON"


def test_train_deploy_and_predict_in_sdk_local_mode(image: str, template: Path, tmp_path: Path):
    python = os.environ.get(SDK_ENV)
    if not python:
        pytest.skip(f"set {SDK_ENV} to a Python with the SageMaker SDK v2 (make docker-test does)")
    hyperparameters = {"num_classes": 3, "num_training_samples": 24, "base_network": "mobilenet-v3",
                       "use_pretrained_model": False, "image_shape": 64, "epochs": 1, "mini_batch_size": 8,
                       "optimizer": "adam", "learning_rate": 0.003, "early_stopping": False}
    remove_compose_containers(image)
    try:
        result = subprocess.run(
            [python, str(REPO / "examples" / "sagemaker_sdk.py"), "local", "--image-uri", image,
             "--data", str(template / "input" / "data"), "--work", str(tmp_path / "sdk"),
             "--hyperparameters", json.dumps(hyperparameters)],
            capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, outcome(result)
        lines = [line for line in result.stdout.splitlines() if line.startswith("SDK local mode: ")]
        assert lines, outcome(result)
        summary = json.loads(lines[-1].removeprefix("SDK local mode: "))

        # The SDK tarred /opt/ml/model as SageMaker does, and the endpoint answered in the built-in's form.
        assert summary["model_data"].startswith("file://")
        with tarfile.open(summary["model_data"].removeprefix("file://")) as archive:
            assert {"model.safetensors", "model.json"} <= {Path(name).name for name in archive.getnames()}
        assert summary["detections"] > 0
        for detection in summary["best"]:
            assert len(detection) == 6 and 0.0 <= detection[1] <= 1.0

        # A local batch transform answered every image of the folder with its own <name>.out.
        assert summary["transform_outputs"] == summary["transform_inputs"] > 0, summary
        assert summary["transform_first"]["detections"] > 0, summary

        # The metric lines reached the SDK's log, as SageMaker's regexes would read them.
        assert "validation mAP <score>=(" in result.stdout + result.stderr

        # compose's containers (a training host, the endpoint, the transform's server) all exited 0: the servers
        # too, on SIGTERM.
        listed = docker("ps", "-a", "--filter", f"ancestor={image}", "--filter", "label=com.docker.compose.project",
                        "--format", "{{.ID}} {{.Command}} {{.Status}}")
        rows = [row for row in listed.stdout.splitlines() if row]
        assert len(rows) >= 3, listed.stdout
        assert all("Exited (0)" in row for row in rows), listed.stdout
    finally:
        remove_compose_containers(image)


def remove_compose_containers(image: str) -> None:
    """The SDK leaves compose's stopped containers behind."""
    ids = docker("ps", "-aq", "--filter", f"ancestor={image}", "--filter", "label=com.docker.compose.project").stdout
    if ids.split():
        docker("rm", "-f", *ids.split())
