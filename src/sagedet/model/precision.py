"""Mixed precision: the autocast dtype for a device (training and serving use the same rule)."""

from __future__ import annotations

import torch

BF16_MIN_COMPUTE_CAPABILITY = 8
"""bf16 tensor cores came with Ampere (compute capability 8.0: A100, A10G, L4, H100). Older GPUs (V100 7.0,
T4 7.5: SageMaker's p3 and g4dn instances) only emulate bf16 — ``torch.cuda.is_bf16_supported()`` still
says yes there, as it counts emulation — and get fp16, whose tensor cores they have."""


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 on CUDA GPUs with bf16 tensor cores, else fp16 (with a gradient scaler in training); None
    (float32) off CUDA."""
    if device.type != "cuda":
        return None
    major, _ = torch.cuda.get_device_capability(device)
    return torch.bfloat16 if major >= BF16_MIN_COMPUTE_CAPABILITY else torch.float16
