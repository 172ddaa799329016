"""The end-to-end tests of the real image (marker ``docker``): `make docker-test` builds
Dockerfile.cpu and runs them with ``SAGEDET_DOCKER_IMAGE`` naming the image. Without that variable
(plain `make test`) they are skipped; the other tests in this folder need no Docker and always run.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

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
