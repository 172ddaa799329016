"""Mixed precision: the autocast dtype for a device (training and serving use the same rule)."""

from __future__ import annotations

import torch


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 on CUDA where the GPU has it, else fp16; None (float32) off CUDA."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
