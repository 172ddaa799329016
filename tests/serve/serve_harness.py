"""Helpers for tests that start the real ``container/serve`` (gunicorn) on a loopback port."""

from __future__ import annotations

import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sagedet.artifacts import save_model
from sagedet.model.ssd import build_ssd

REPO = Path(__file__).resolve().parents[2]
SERVE = REPO / "container" / "serve"
CLASS_NAMES = ["rectangle", "ellipse", "triangle"]


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """In-process models run on one thread: on a busy 2-core machine torch's thread pool can spin for
    seconds per tiny forward pass."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_model(model_dir: Path, base_network: str = "mobilenet-v3", num_classes: int = 3, image_shape: int = 64,
                class_names: list[str] | None = CLASS_NAMES, seed: int = 0) -> None:
    """An untrained model whose detections depend on the image.

    With torchvision's initialization an untrained MobileNetV3's activations vanish (about 1e-14 at
    the first SSD map), so every image would get the same detections; fan-in initialization keeps
    them alive.
    """
    torch.manual_seed(seed)
    model = build_ssd(base_network, num_classes, image_shape)
    with torch.no_grad():
        for module in model.features.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
    metadata = {"base_network": base_network, "num_classes": num_classes, "image_shape": image_shape,
                "nms_threshold": 0.45, "class_names": class_names, "sagedet_version": "test"}
    save_model(model_dir, model.state_dict(), metadata)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def scene(width: int = 160, height: int = 120, seed: int = 0, noise: int = 24) -> Image.Image:
    """A colour gradient with a few rectangles and some noise (``noise=0``: compresses to little)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 255 // max(1, width - 1), y * 255 // max(1, height - 1),
                       (x + y) * 127 // max(1, width + height - 2)], axis=-1).astype(np.int32)
    for _ in range(3):
        x0, y0 = rng.integers(0, width // 2), rng.integers(0, height // 2)
        pixels[y0:y0 + height // 3, x0:x0 + width // 3] = rng.integers(0, 255, 3)
    if noise:
        pixels += rng.integers(-noise, noise + 1, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def child_pids(pid: int) -> set[int]:
    """Processes whose parent is ``pid`` (the gunicorn master's workers)."""
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.add(int(stat.parent.name))
    return children


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes, seconds: float):
        self.status, self.headers, self.body, self.seconds = status, headers, body, seconds

    def json(self):
        return json.loads(self.body)


class Server:
    """``container/serve`` in a subprocess; its output goes to ``log`` (a file: a pipe could fill)."""

    def __init__(self, opt_ml: Path, log: Path, **env: str):
        self.opt_ml, self.log, self.port = opt_ml, log, free_port()
        self.env = dict(os.environ, SAGEDET_OPT_ML=str(opt_ml), SAGEDET_BIND_HOST="127.0.0.1",
                        SAGEMAKER_BIND_TO_PORT=str(self.port), PYTHONUNBUFFERED="1")
        self.env.update(env)
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> "Server":
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen([sys.executable, str(SERVE)], env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited with {self.process.returncode}:\n{self.output()}")
            try:
                if self.request("GET", "/ping", timeout=2).status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"serve did not answer /ping within {timeout} s:\n{self.output()}")

    @property
    def pid(self) -> int:
        return self.process.pid  # container/serve exec()s gunicorn: this is gunicorn's master

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
                timeout: float = 60, chunked: bool = False) -> Response:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        started = time.monotonic()
        try:
            try:
                if chunked:
                    connection.request(method, path, body=iter([body[i:i + 65536] for i in range(0, len(body), 65536)]),
                                       headers=headers or {}, encode_chunked=True)
                else:
                    connection.request(method, path, body=body, headers=headers or {})
            except BrokenPipeError:
                pass  # the server answered (a 413 from the headers) and closed before the body was all sent
            response = connection.getresponse()
            data = response.read()
            return Response(response.status, {k.lower(): v for k, v in response.getheaders()}, data,
                            time.monotonic() - started)
        finally:
            connection.close()

    def invoke(self, image: bytes, content_type: str = "image/png", **headers: str) -> Response:
        names = {"accept": "Accept", "attributes": "X-Amzn-SageMaker-Custom-Attributes"}
        sent = {"Content-Type": content_type, **{names.get(k, k): v for k, v in headers.items()}}
        return self.request("POST", "/invocations", image, sent)

    def stop(self, timeout: float = 40) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(10)
