"""The model on its device: loading, pre-processing, detection, thresholds.

Pre-processing is the training evaluation pipeline's (``sagedet.data.transforms.eval_transform``):
the whole RGB image resized to the model's square input side with antialiasing, as uint8, then
scaled to [0, 1]. Because the model sees the whole image squashed to a square, its normalized boxes
are normalized coordinates of the original image as they are.

A :class:`Predictor` serves several threads: at most ``decode_slots`` requests decode and resize
at once, one at a time runs the model, and a request that cannot start within its wait is refused
with 503 (the worker stays up).
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torchvision.transforms.v2 import functional as F

from sagedet.artifacts import load_model
from sagedet.errors import ConfigError, ModelError, SagedetError
from sagedet.model.ssd import Detections, SSDDetector, build_ssd
from sagedet.sagemaker.hyperparameters import BASE_NETWORKS
from sagedet.serve.codecs import DecodedImage, Options, decode_image
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
    """``auto``: CUDA device ``slot`` mod the GPU count when CUDA is present, else the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", slot % torch.cuda.device_count())
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"SAGEDET_DEVICE={name}: CUDA is not available on this machine")
    return torch.device(name)


class Predictor:
    def __init__(self, model: SSDDetector, metadata: dict, device: torch.device, decode_slots: int = 2):
        self.model = model
        self.metadata = metadata
        self.device = device
        self.image_shape = int(metadata["image_shape"])
        self.nms_threshold = float(metadata.get("nms_threshold", 0.45))
        num_classes = int(metadata["num_classes"])
        names = [str(name) for name in metadata.get("class_names") or []]
        self.class_names = names[:num_classes] + [str(i) for i in range(len(names), num_classes)]
        self._decoding = threading.BoundedSemaphore(decode_slots)
        self._model_lock = threading.Lock()
        self.load_seconds = 0.0

    @classmethod
    def load(cls, model_dir: Path, device: str = "auto", slot: int = 0, threads: int | None = None,
             warm_up: bool = True) -> "Predictor":
        """Read the model folder (see :mod:`sagedet.artifacts`), place it on its device, run it once."""
        started = time.monotonic()
        state, metadata = load_model(Path(model_dir))
        try:
            network, num_classes, side = (str(metadata["base_network"]), int(metadata["num_classes"]),
                                          int(metadata["image_shape"]))
        except (KeyError, TypeError, ValueError) as error:
            raise ModelError(f"{Path(model_dir) / 'model.json'}: base_network, num_classes and image_shape must be "
                             f"a name and two integers ({type(error).__name__}: {error})") from error
        if network not in BASE_NETWORKS:
            raise ModelError(f"{Path(model_dir) / 'model.json'}: base_network {network!r} is not one of "
                             f"{', '.join(BASE_NETWORKS)}")
        target = resolve_device(device, slot)
        if threads and target.type == "cpu":
            torch.set_num_threads(threads)
        try:
            model = build_ssd(network, num_classes, side)
            model.load_state_dict(state)
        except (RuntimeError, ValueError, KeyError) as error:
            raise ModelError(f"{model_dir}: the weights do not fit a {network} SSD with {num_classes} classes at "
                             f"{side} px: {error}") from error
        except SagedetError as error:
            raise ModelError(f"{model_dir}/model.json describes a model sagedet cannot build: {error}") from error
        model.eval().to(target)
        if target.type == "cuda":
            torch.backends.cudnn.benchmark = True  # one input shape
        predictor = cls(model, metadata, target)
        if warm_up:
            side = predictor.image_shape
            predictor.detect(torch.zeros(1, 3, side, side, device=target), Options(0.0, 1))
        predictor.load_seconds = time.monotonic() - started
        return predictor

    def describe(self) -> str:
        return (f"{self.metadata['base_network']} SSD at {self.image_shape} px, {len(self.class_names)} classes, "
                f"on {self.device}" + (f" ({torch.get_num_threads()} threads)" if self.device.type == "cpu" else ""))

    # --- the steps ----------------------------------------------------------------------------------
    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """RGB image → float32 (1, 3, S, S) in [0, 1] on the model's device."""
        pixels = F.pil_to_tensor(image).to(self.device, non_blocking=True)
        resized = F.resize(pixels, [self.image_shape, self.image_shape], antialias=True)
        return (resized.float() / 255.0).unsqueeze(0)

    @torch.inference_mode()
    def detect(self, batch: torch.Tensor, options: Options) -> Detections:
        detections = self.model.detect(batch, self.nms_threshold, score_threshold=MODEL_SCORE_FLOOR,
                                       max_detections=options.max_detections)[0]
        keep = detections.scores >= options.threshold
        return Detections(detections.boxes[keep].cpu(), detections.scores[keep].cpu(), detections.labels[keep].cpu())

    def predict(self, decoded: DecodedImage, options: Options) -> Prediction:
        """One decoded image, in the calling thread (``sagedet predict``)."""
        return _prediction(decoded, self.detect(self.preprocess(decoded.image), options))

    def predict_bytes(self, data: bytes, options: Options, max_pixels: int, wait: float) -> Prediction:
        """One request body, from any thread: decode (a few at once), then the model (one at a time).

        Raises BadRequest for bytes that are not a usable image and ServiceUnavailable when the
        request cannot start a step within ``wait`` seconds of arriving.
        """
        deadline = time.monotonic() + wait
        with _slot(self._decoding, deadline, "decode"):
            decoded = decode_image(data, max_pixels, self.image_shape)
            batch = self.preprocess(decoded.image)
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
