"""The model on its device: loading, pre-processing, detection, thresholds.

Pre-processing is the training evaluation pipeline's (``sagedet.data.transforms.eval_transform``):
the whole RGB image resized to the model's square input side with antialiasing, as uint8, then
scaled to [0, 1]. Because the model sees the whole image squashed to a square, its normalized boxes
are normalized coordinates of the original image as they are.

The model runs by the fastest inference path the worker has (:mod:`sagedet.serve.engines`).

A :class:`Predictor` serves several threads: at most ``decode_slots`` requests decode and resize
at once; then either one at a time runs the model, or, with request batching on
(:mod:`sagedet.serve.batching`), waiting images go through the model together, each request
getting its own image's detections. A request that cannot be served within its wait is refused
with 503 (the worker stays up).
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torchvision.transforms.v2 import functional as F

from sagedet.allocator import tune_malloc
from sagedet.data.transforms import eval_transform, scale_pixels
from sagedet.devices import auto_device_type, present_device
from sagedet.model.precision import NAMES, amp_dtype
from sagedet.model.saved import load_detector
from sagedet.model.ssd import Detections, SSDDetector, select_detections
from sagedet.serve.batching import Batcher
from sagedet.serve.codecs import DecodedImage, Options, decode_image
from sagedet.serve.engines import Engine, build_engine, eager_path
from sagedet.serve.errors import ServiceUnavailable

MODEL_SCORE_FLOOR = 0.01
"""Candidates scoring below this never leave the model (``SSDDetector.postprocess``)."""


@dataclass(frozen=True)
class Prediction:
    """One image's detections, best first: boxes normalized xyxy in [0, 1] of the oriented image of
    ``width`` × ``height`` pixels, scores, 0-based class ids."""

    width: int
    height: int
    boxes: list[list[float]]
    scores: list[float]
    labels: list[int]


def resolve_device(name: str = "auto", slot: int = 0) -> torch.device:
    """``auto``: CUDA device ``slot`` mod the GPU count when CUDA is present, else the CPU; ``cuda``: the
    same GPU, and an error on a machine without one; ``cuda:N``: GPU N for every worker; ``cpu``."""
    what = f"SAGEDET_DEVICE={name}"
    device = torch.device(auto_device_type(what)) if name == "auto" else present_device(name, what)
    if device.type == "cuda" and device.index is None:  # torch.cuda.set_device needs the index
        return torch.device("cuda", slot % torch.cuda.device_count())
    return device


@dataclass(frozen=True)
class Batching:
    """Request batching: at most ``max_size`` images a batch, closed ``max_delay`` seconds after it opens."""

    max_size: int
    max_delay: float


class Predictor:
    def __init__(self, model: SSDDetector, metadata: dict, device: torch.device, engine: Engine | None = None,
                 decode_slots: int = 2, batching: Batching | None = None, malloc: str = ""):
        self.model = model
        self.metadata = metadata
        self.device = device
        dtype = amp_dtype(device)
        self.engine = engine or Engine("eager", eager_path(model, device, dtype), precision=NAMES[dtype])
        self.image_shape = int(metadata["image_shape"])
        self._resize = eval_transform(self.image_shape)  # validation's resize: the model sees what it was scored on
        self.nms_threshold = float(metadata.get("nms_threshold", 0.45))
        num_classes = int(metadata["num_classes"])
        names = [str(name) for name in metadata.get("class_names") or []]
        self.class_names = names[:num_classes] + [str(i) for i in range(len(names), num_classes)]
        self._decoding = threading.BoundedSemaphore(decode_slots)
        self._model_lock = threading.Lock()
        self.batcher: Batcher | None = None
        if batching is not None and batching.max_size > 1:
            self.batcher = Batcher(self._detect_batch, batching.max_size, batching.max_delay)
        self.load_seconds = 0.0
        self.malloc = malloc  # what tune_malloc did in this process (CPU workers), for the log

    @classmethod
    def load(cls, model_dir: Path, device: str = "auto", slot: int = 0, threads: int | None = None,
             warm_up: bool = True, inference_path: str = "auto", batching: Batching | None = None,
             decode_slots: int = 2, precision: str = "auto") -> Predictor:
        """Read the model folder (see :mod:`sagedet.artifacts`), place it on its device, pick its
        inference path and precision (``SAGEDET_PRECISION``, :mod:`sagedet.model.precision`), run it once."""
        started = time.monotonic()
        model, metadata = load_detector(Path(model_dir))
        target = resolve_device(device, slot)
        malloc = ""
        if target.type == "cpu":
            malloc = tune_malloc()
            if threads:
                torch.set_num_threads(threads)
        if target.type == "cuda":
            torch.cuda.set_device(target)  # pinned memory and lazily made CUDA tensors go to the current device
            torch.backends.cudnn.benchmark = True  # tuned per batch size, each in the warm-up below
        model.eval().to(target)
        engine = build_engine(inference_path, model, Path(model_dir), target, threads,
                              probe_batch=batching.max_size if batching else 1, precision=precision)
        predictor = cls(model, metadata, target, engine, decode_slots, batching, malloc)
        if warm_up:
            predictor.warm_up()
        predictor.load_seconds = time.monotonic() - started
        return predictor

    def warm_up(self) -> None:
        """Run the model once on a blank image; on CUDA with request batching, twice on every batch size
        it may get, so that cuDNN's tuning and TorchScript's specialization for each shape happen here,
        not in a request."""
        blank = torch.zeros(1, 3, self.image_shape, self.image_shape, device=self.device)
        if self.batcher is None or self.device.type != "cuda":
            self.detect(blank, Options(0.0, 1))
            return
        for size in range(1, self.batcher.max_size + 1):
            for _ in range(2):
                self.detect_many([blank] * size, [Options(0.0, 1)] * size)

    def describe(self) -> str:
        threads = f" ({torch.get_num_threads()} threads, {self.malloc})" if self.device.type == "cpu" else ""
        batching = (f", request batches of up to {self.batcher.max_size} within {self.batcher.max_delay * 1000:g} ms"
                    if self.batcher else "")
        return (f"{self.metadata['base_network']} SSD at {self.image_shape} px, {len(self.class_names)} classes, "
                f"on {self.device}{threads}, {self.engine.describe()}{batching}")

    # --- the steps ----------------------------------------------------------------------------------
    def _current_device(self):
        """The model's GPU as the calling thread's current CUDA device. torch.cuda.set_device holds for the
        thread that calls it (the worker's main thread, in ``load``); gunicorn's request threads and the
        batcher's thread start on GPU 0, where code that uses the current device (TorchScript's fused
        kernels switch to it) would open a second CUDA context on a worker of another GPU."""
        return torch.cuda.device(self.device) if self.device.type == "cuda" else nullcontext()

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """RGB image → float32 (1, 3, S, S) in [0, 1] on the model's device."""
        with self._current_device():
            pixels = F.pil_to_tensor(image).to(self.device, non_blocking=True)
            return scale_pixels(self._resize(pixels)).unsqueeze(0)

    @torch.inference_mode()
    def detect_many(self, images: list[torch.Tensor], options: list[Options]) -> list[Detections]:
        """Images (1, 3, S, S) run as one batch; each image's detections with its own options, on the CPU."""
        with self._current_device():
            return self._detect_many(images, options)

    def _detect_many(self, images: list[torch.Tensor], options: list[Options]) -> list[Detections]:
        scores, boxes = self.engine(torch.cat(images) if len(images) > 1 else images[0])
        results = []
        for index, option in enumerate(options):
            (found,) = select_detections(scores[index:index + 1], boxes[index:index + 1], self.nms_threshold,
                                         MODEL_SCORE_FLOOR, max_detections=option.max_detections)
            keep = found.scores >= option.threshold
            results.append(Detections(found.boxes[keep].cpu(), found.scores[keep].cpu(), found.labels[keep].cpu()))
        return results

    def detect(self, batch: torch.Tensor, options: Options) -> Detections:
        return self.detect_many([batch], [options])[0]

    def _detect_batch(self, requests: list[tuple[torch.Tensor, Options]]) -> list[Detections]:
        return self.detect_many([image for image, _ in requests], [option for _, option in requests])

    def predict(self, decoded: DecodedImage, options: Options) -> Prediction:
        """One decoded image, in the calling thread (``sagedet predict``)."""
        return _prediction(decoded, self.detect(self.preprocess(decoded.image), options))

    def predict_bytes(self, data: bytes, options: Options, max_pixels: int, wait: float) -> Prediction:
        """One request body, from any thread: decode (a few at once), then the model (one at a time,
        or in a batch with other requests' images).

        Raises BadRequest for bytes that are not a usable image and ServiceUnavailable when the
        request cannot be served within ``wait`` seconds of arriving.
        """
        deadline = time.monotonic() + wait
        with _slot(self._decoding, deadline, "decode"):
            decoded = decode_image(data, max_pixels, self.image_shape)
            batch = self.preprocess(decoded.image)
        if self.batcher is not None:
            return _prediction(decoded, self.batcher.submit((batch, options), deadline))
        with _slot(self._model_lock, deadline, "run the model on"):
            detections = self.detect(batch, options)
        return _prediction(decoded, detections)


@contextmanager
def _slot(lock, deadline: float, what: str):
    if not lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
        raise ServiceUnavailable(
            f"the worker is busy: it could not {what} the image within SAGEMAKER_MODEL_SERVER_TIMEOUT; retry later")
    try:
        yield
    finally:
        lock.release()


def _prediction(decoded: DecodedImage, detections: Detections) -> Prediction:
    return Prediction(decoded.width, decoded.height, detections.boxes.tolist(), detections.scores.tolist(),
                      detections.labels.tolist())
