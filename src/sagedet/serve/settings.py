"""The inference server's environment → one typed, validated :class:`ServeSettings`.

SageMaker's variables (CONTRACT §5):

=================================== ============================================================
SAGEMAKER_BIND_TO_PORT              port to listen on (default 8080)
SAGEMAKER_MODEL_SERVER_WORKERS      worker processes, each with its own copy of the model
                                    (default: one per GPU; without CUDA, one per usable CPU, at
                                    most 8; torch's threads are shared out between workers)
SAGEMAKER_MODEL_SERVER_TIMEOUT      seconds a request may wait for its worker's model before it
                                    is answered 503; also gunicorn's worker timeout (default 60)
SAGEMAKER_MAX_PAYLOAD_IN_MB         largest request body in MiB, 0 for no limit (default 6)
SAGEMAKER_BATCH                     "true" when serving a batch transform job (default false)
SAGEMAKER_BATCH_STRATEGY            SINGLE_RECORD or MULTI_RECORD (informative: an image is one
                                    record, one request holds one image whatever the strategy)
SAGEMAKER_MAX_CONCURRENT_TRANSFORMS informative; /execution-parameters recommends the workers
=================================== ============================================================

sagedet's own variables:

=================================== ============================================================
SAGEDET_BIND_HOST                   address to bind (default 0.0.0.0, as SageMaker needs; tests
                                    use 127.0.0.1)
SAGEDET_SCORE_THRESHOLD             default lowest score returned, in [0, 1] (default 0.0: every
                                    detection the model returns, like the built-in, which leaves
                                    filtering to the client). A request's ``threshold`` custom
                                    attribute overrides it.
SAGEDET_MAX_DETECTIONS              default most detections per image, 1 to 1000 (default 200);
                                    a request's ``max_detections`` custom attribute overrides it.
SAGEDET_MAX_IMAGE_PIXELS            largest image accepted, width × height (default 64 000 000,
                                    e.g. 8000 × 8000); larger images are refused as possible
                                    decompression bombs before they are decoded.
SAGEDET_DEVICE                      auto (default: CUDA when present, worker i on GPU i mod n),
                                    cpu, cuda (as auto, and an error without a GPU) or cuda:N
                                    (every worker on GPU N)
SAGEDET_TORCH_THREADS               torch intra-op threads per worker, 1 to 256 (default: the
                                    usable CPUs divided between the workers, at least 1)
SAGEDET_INFERENCE_PATH              auto (default: the fastest path measured when the worker
                                    starts), eager, torchscript, winograd or onnxruntime
                                    (see sagedet.serve.engines)
SAGEDET_PRECISION                   auto (default: bf16 autocast on CUDA GPUs with bf16 tensor
                                    cores, else fp16; on CPUs with bf16 instructions bf16 paths
                                    race float32 ones; float32 on other CPUs, and for a model
                                    bf16 moves past 0.05), float32, bf16 (CUDA or the CPU) or
                                    fp16 (CUDA); reduced precision is checked within 0.05 of
                                    float32 when the worker starts (see sagedet.serve.engines)
SAGEDET_BATCH_SIZE                  most images one model call takes from concurrent requests
                                    (request batching), 1 to 256; 1 turns batching off (default:
                                    16 on CUDA, 1 on the CPU)
SAGEDET_BATCH_DELAY_MS              longest a batch waits for more images after its first, 0 to
                                    1000 ms (default 5)
SAGEDET_OPT_ML                      the /opt/ml root (the model is read from <root>/model)
=================================== ============================================================

Every problem is reported at once, each naming its variable, in one ConfigError.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

from sagedet.devices import parse_device
from sagedet.errors import ConfigError
from sagedet.model.precision import PRECISIONS
from sagedet.sagemaker.paths import SageMakerPaths

PORT = "SAGEMAKER_BIND_TO_PORT"
WORKERS = "SAGEMAKER_MODEL_SERVER_WORKERS"
TIMEOUT = "SAGEMAKER_MODEL_SERVER_TIMEOUT"
MAX_PAYLOAD = "SAGEMAKER_MAX_PAYLOAD_IN_MB"
BATCH = "SAGEMAKER_BATCH"
BATCH_STRATEGY = "SAGEMAKER_BATCH_STRATEGY"
MAX_CONCURRENT_TRANSFORMS = "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS"
HOST = "SAGEDET_BIND_HOST"
SCORE_THRESHOLD = "SAGEDET_SCORE_THRESHOLD"
MAX_DETECTIONS = "SAGEDET_MAX_DETECTIONS"
MAX_IMAGE_PIXELS = "SAGEDET_MAX_IMAGE_PIXELS"
DEVICE = "SAGEDET_DEVICE"
TORCH_THREADS = "SAGEDET_TORCH_THREADS"
INFERENCE_PATH = "SAGEDET_INFERENCE_PATH"
PRECISION = "SAGEDET_PRECISION"
BATCH_SIZE = "SAGEDET_BATCH_SIZE"
BATCH_DELAY = "SAGEDET_BATCH_DELAY_MS"

DEFAULT_MAX_IMAGE_PIXELS = 64_000_000
MAX_DETECTIONS_LIMIT = 1000
"""The model keeps at most 1000 candidates per image before NMS (``SSDDetector.postprocess``)."""
GPU_BATCH_SIZE = 16
"""Default request batch on CUDA: the requests one gunicorn worker holds at once (its threads)."""
CPU_WORKERS_CAP = 8
"""Past 8 CPU workers, more threads per worker serve as well with less memory."""

_T = TypeVar("_T")


@dataclass(frozen=True)
class ServeSettings:
    model_dir: Path
    host: str = "0.0.0.0"
    port: int = 8080
    workers: int = 1
    timeout: int = 60
    max_payload_mb: int = 6
    score_threshold: float = 0.0
    max_detections: int = 200
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    device: str = "auto"
    batch: bool = False
    batch_strategy: str | None = None
    max_concurrent_transforms: int | None = None
    threads_per_worker: int | None = None
    inference_path: str = "auto"
    precision: str = "auto"
    batch_size: int | None = None
    batch_delay_ms: float = 5.0

    @property
    def max_payload_bytes(self) -> int | None:
        """The body limit in bytes (MiB × 2**20), or None for no limit."""
        return self.max_payload_mb * 1024 * 1024 if self.max_payload_mb else None

    def torch_threads(self, cpus: int | None = None) -> int:
        """Intra-op threads for one worker: SAGEDET_TORCH_THREADS, else the CPUs shared out between
        the workers."""
        if self.threads_per_worker is not None:
            return self.threads_per_worker
        return max(1, (cpus or usable_cpus()) // self.workers)

    def batch_limit(self, device_type: str) -> int:
        """Most images a model call takes: SAGEDET_BATCH_SIZE, else 16 on CUDA and 1 (off) on the CPU."""
        if self.batch_size is not None:
            return self.batch_size
        return GPU_BATCH_SIZE if device_type == "cuda" else 1

    def decode_slots(self, device_type: str) -> int:
        """Requests a worker decodes at once: 2 on the CPU (the model needs the cores), as many as its
        torch threads on CUDA (the GPU waits on decoding)."""
        return max(2, self.torch_threads()) if device_type == "cuda" else 2

    def execution_parameters(self) -> dict:
        """The answer to ``GET /execution-parameters`` (batch transform): one image per request, as
        many requests at once as there are workers."""
        return {"MaxConcurrentTransforms": self.workers, "BatchStrategy": "SINGLE_RECORD",
                "MaxPayloadInMB": self.max_payload_mb}


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def count_gpus() -> int:
    """CUDA devices visible to this process. ``torch.cuda.device_count`` asks NVML first, which leaves CUDA
    uninitialised in the gunicorn master so that forked workers can use it; ``torch.cuda.is_available``
    would call cudaGetDeviceCount (the driver's initialisation) first."""
    import torch

    return torch.cuda.device_count()


def default_workers(cpus: int, gpus: int) -> int:
    return gpus if gpus > 0 else max(1, min(cpus, CPU_WORKERS_CAP))


def load_settings(environ: Mapping[str, str] | None = None, gpus: Callable[[], int] = count_gpus,
                  cpus: Callable[[], int] = usable_cpus) -> ServeSettings:
    """Read and validate the environment. ``gpus`` is only called when the worker count is not set."""
    env = os.environ if environ is None else environ
    reader = _Reader(env)
    device = reader.read(DEVICE, "auto", parse_device)
    workers = reader.read(WORKERS, None, _integer(1, None))
    settings = ServeSettings(
        model_dir=SageMakerPaths.from_env(dict(env)).model_dir,
        host=reader.read(HOST, "0.0.0.0", _host),
        port=reader.read(PORT, 8080, _integer(1, 65535)),
        workers=1,
        timeout=reader.read(TIMEOUT, 60, _integer(1, None)),
        max_payload_mb=reader.read(MAX_PAYLOAD, 6, _integer(0, None)),
        score_threshold=reader.read(SCORE_THRESHOLD, 0.0, _number(0.0, 1.0)),
        max_detections=reader.read(MAX_DETECTIONS, 200, _integer(1, MAX_DETECTIONS_LIMIT)),
        max_image_pixels=reader.read(MAX_IMAGE_PIXELS, DEFAULT_MAX_IMAGE_PIXELS, _integer(1, None)),
        device=device,
        batch=reader.read(BATCH, False, _boolean),
        batch_strategy=reader.read(BATCH_STRATEGY, None, _strategy),
        max_concurrent_transforms=reader.read(MAX_CONCURRENT_TRANSFORMS, None, _integer(1, None)),
        threads_per_worker=reader.read(TORCH_THREADS, None, _integer(1, 256)),
        inference_path=reader.read(INFERENCE_PATH, "auto", _choice("auto", "eager", "torchscript", "winograd", "onnxruntime")),
        precision=reader.read(PRECISION, "auto", _choice(*PRECISIONS)),
        batch_size=reader.read(BATCH_SIZE, None, _integer(1, 256)),
        batch_delay_ms=reader.read(BATCH_DELAY, 5.0, _number(0.0, 1000.0)),
    )
    if reader.problems:
        raise ConfigError("invalid inference server environment:\n  " + "\n  ".join(reader.problems))
    if workers is None:
        workers = default_workers(cpus(), 0 if device == "cpu" else gpus())
    return replace(settings, workers=workers)


class _Reader:
    def __init__(self, env: Mapping[str, str]):
        self.env = env
        self.problems: list[str] = []

    def read(self, name: str, default: _T, parse: Callable[[str], _T]) -> _T:
        raw = self.env.get(name)
        if raw is None or raw.strip() == "":
            return default
        try:
            return parse(raw.strip())
        except ValueError as error:
            self.problems.append(f"{name}={raw!r}: {error}")
            return default


def _integer(low: int, high: int | None) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        allowed = f"an integer from {low} to {high}" if high is not None else f"an integer >= {low}"
        if not re.fullmatch(r"[+-]?\d+", raw):
            raise ValueError(f"expected {allowed}")
        value = int(raw)
        if value < low or (high is not None and value > high):
            raise ValueError(f"expected {allowed}")
        return value
    return parse


def _number(low: float, high: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            value = float("nan")
        if not low <= value <= high:  # also refuses nan
            raise ValueError(f"expected a number from {low:g} to {high:g}")
        return value
    return parse


def _boolean(raw: str) -> bool:
    value = raw.lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise ValueError("expected true or false")


def _strategy(raw: str) -> str:
    value = {"singlerecord": "SINGLE_RECORD", "multirecord": "MULTI_RECORD"}.get(raw.lower(), raw.upper())
    if value not in ("SINGLE_RECORD", "MULTI_RECORD"):
        raise ValueError("expected SINGLE_RECORD or MULTI_RECORD")
    return value


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw.lower() not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}")
        return raw.lower()
    return parse


def _host(raw: str) -> str:
    if any(c.isspace() for c in raw):
        raise ValueError("expected an address such as 0.0.0.0 or 127.0.0.1")
    return raw
