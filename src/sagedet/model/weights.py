"""ImageNet weights for the base networks, read from a local cache — never downloaded at training time.

The cache is ``$SAGEDET_WEIGHTS_DIR`` when set, else torch hub's ``checkpoints`` folder
(``$TORCH_HOME/hub/checkpoints``, by default ``~/.cache/torch/hub/checkpoints``), which is where
torchvision itself keeps these files. The Docker images fill it at build time with
``sagedet fetch-weights``; the file names are torchvision's own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision.models import MobileNet_V3_Large_Weights, ResNet50_Weights, VGG16_Weights
from torchvision.models._api import WeightsEnum

from ..errors import ModelError

WEIGHTS_DIR_ENV = "SAGEDET_WEIGHTS_DIR"


@dataclass(frozen=True)
class PretrainedWeights:
    base_network: str
    weights: WeightsEnum

    @property
    def url(self) -> str:
        return self.weights.url

    @property
    def file_name(self) -> str:
        return self.url.rsplit("/", 1)[-1]


# VGG-16: the features-only weights (ported from the original SSD paper's Caffe model) that
# torchvision's own ssd300_vgg16 starts from.
PRETRAINED: dict[str, PretrainedWeights] = {
    "vgg-16": PretrainedWeights("vgg-16", VGG16_Weights.IMAGENET1K_FEATURES),
    "resnet-50": PretrainedWeights("resnet-50", ResNet50_Weights.IMAGENET1K_V1),
    "mobilenet-v3": PretrainedWeights("mobilenet-v3", MobileNet_V3_Large_Weights.IMAGENET1K_V1),
}


def weights_dir() -> Path:
    configured = os.environ.get(WEIGHTS_DIR_ENV)
    if configured:
        return Path(configured)
    return Path(torch.hub.get_dir()) / "checkpoints"


def weights_path(base_network: str) -> Path:
    return weights_dir() / PRETRAINED[base_network].file_name


def load_pretrained_state(base_network: str) -> dict[str, torch.Tensor]:
    """The ImageNet state dict of ``base_network``'s torchvision classifier, from the local cache."""
    spec = PRETRAINED[base_network]
    path = weights_path(base_network)
    if not path.is_file():
        raise ModelError(
            f"use_pretrained_model=1 needs the ImageNet weights of base_network={base_network}, "
            f"expected at {path}, which does not exist. sagedet never downloads at training time. "
            f"Provide the file: run `sagedet fetch-weights` on a machine with internet access (or "
            f"download {spec.url}) and copy it into {weights_dir()} (set {WEIGHTS_DIR_ENV} to use another "
            f"folder); or set use_pretrained_model=0 to train from scratch."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise ModelError(f"pretrained weights file {path} does not load as a PyTorch state dict: {exc}") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"pretrained weights file {path} is not a state dict of tensors")
    return state


def fetch_pretrained(base_networks: list[str] | None = None) -> list[Path]:
    """Download the ImageNet weights into the cache (for image builds; needs internet access)."""
    fetched = []
    target = weights_dir()
    target.mkdir(parents=True, exist_ok=True)
    for name in base_networks or list(PRETRAINED):
        spec = PRETRAINED[name]
        path = target / spec.file_name
        if not path.is_file():
            torch.hub.download_url_to_file(spec.url, str(path), progress=False)
        fetched.append(path)
    return fetched
