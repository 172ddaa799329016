"""``SAGEDET_DEVICE``'s values (auto, cpu, cuda, cuda:N), read the same way by training and the server."""

from __future__ import annotations

import re

import torch

from sagedet.errors import ConfigError


def parse_device(raw: str) -> str:
    """The value in lower case; ValueError saying what is allowed otherwise."""
    value = raw.lower()
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
        raise ValueError("expected auto, cpu, cuda or cuda:N")
    return value


def present_device(name: str, what: str) -> torch.device:
    """A parsed ``cpu``, ``cuda`` or ``cuda:N`` as a device, if this machine has it; ConfigError naming
    ``what`` otherwise."""
    device = torch.device(name)
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if count == 0:
            raise ConfigError(f"{what}: CUDA is not available on this machine")
        if device.index is not None and device.index >= count:
            raise ConfigError(f"{what}: this machine has {count} GPU(s), cuda:0 to cuda:{count - 1}")
    return device
