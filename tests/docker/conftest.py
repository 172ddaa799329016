"""The end-to-end tests of the real image (marker ``docker``): `make docker-test` builds
Dockerfile.cpu and runs them with ``SAGEDET_DOCKER_IMAGE`` naming the image. Without that variable
(plain `make test`) they are skipped; the other tests in this folder need no Docker and always run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .docker_harness import EPOCHS, outcome, run

IMAGE_ENV = "SAGEDET_DOCKER_IMAGE"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "docker: builds or runs the real Docker image (make docker-test)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get(IMAGE_ENV):
        return
    skip = pytest.mark.skip(reason=f"needs a built image: `make docker-test` builds one and sets {IMAGE_ENV}")
    for item in items:
        if item.get_closest_marker("docker") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def image() -> str:
    name = os.environ[IMAGE_ENV]
    if shutil.which("docker") is None:
        pytest.fail("no docker command: run `make docker-engine` (docker/engine.sh)")
    found = subprocess.run(["docker", "image", "inspect", name], capture_output=True, text=True)
    if found.returncode != 0:
        pytest.fail(f"{IMAGE_ENV}={name}: no such image ({found.stderr.strip()}); `make build-cpu` builds it")
    return name


@pytest.fixture(scope="session")
def template(image: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SageMaker /opt/ml tree written by the image's own `sagedet sample-data`: 24 training and 8
    validation images, a 2-epoch mobilenet-v3 job at 64 px. Each job copies it (new_job)."""
    work = tmp_path_factory.mktemp("docker-data")
    result = run(image, ["sagedet", "sample-data", "/data/opt_ml", "--train", "24", "--validation", "8",
                         "--epochs", str(EPOCHS), "--image-shape", "64", "--mini-batch-size", "8"],
                 {work: "/data"}, timeout=300)
    assert result.returncode == 0, outcome(result)
    return work / "opt_ml"
