"""Helpers for the tests that run the real image: time-limited docker commands, /opt/ml trees, HTTP
to 127.0.0.1."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import subprocess
import tarfile
import uuid
from pathlib import Path

EPOCHS = 2  # of the generated data's job (sample-data --epochs)


def docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


def run(image: str, command: list[str], mounts: dict[Path, str], timeout: float = 600,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`docker run --rm` with bind mounts; the container is removed even when the time runs out."""
    name = f"sagedet-test-{uuid.uuid4().hex[:12]}"
    args = ["run", "--rm", "--name", name]
    for source, target in mounts.items():
        args += ["-v", f"{source}:{target}"]
    for key, value in (env or {}).items():
        args += ["-e", f"{key}={value}"]
    try:
        return docker(*args, image, *command, timeout=timeout)
    finally:
        docker("rm", "-f", name, timeout=60)


def outcome(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\n--- stdout (end) ---\n{result.stdout[-3000:]}\n--- stderr (end) ---\n" \
           f"{result.stderr[-3000:]}"


def new_job(template: Path, root: Path, **hyperparameters: str) -> Path:
    shutil.copytree(template, root)
    config = root / "input" / "config" / "hyperparameters.json"
    values = json.loads(config.read_text())
    values.update(hyperparameters)
    config.write_text(json.dumps(values))
    return root


def make_model_tarball(model_dir: Path, tarball: Path) -> Path:
    """What SageMaker does with /opt/ml/model after a job: its files at the archive's top level."""
    with tarfile.open(tarball, "w:gz") as archive:
        for path in sorted(model_dir.iterdir()):
            archive.add(path, arcname=path.name)
    return tarball


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port: int, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()
