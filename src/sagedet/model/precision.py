"""Mixed precision: the autocast dtype for a device (training and serving use the same rule), and the
inference server's ``SAGEDET_PRECISION`` choice."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from sagedet.errors import ConfigError

BF16_MIN_COMPUTE_CAPABILITY = 8
"""bf16 tensor cores came with Ampere (compute capability 8.0: A100, A10G, L4, H100). Older GPUs (V100 7.0,
T4 7.5: SageMaker's p3 and g4dn instances) only emulate bf16 — ``torch.cuda.is_bf16_supported()`` still
says yes there, as it counts emulation — and get fp16, whose tensor cores they have."""

PRECISIONS = ("auto", "float32", "bf16", "fp16")
"""``SAGEDET_PRECISION``: ``auto`` is :func:`amp_dtype` on CUDA (bf16 or fp16 autocast) and, on a CPU with
bf16 instructions, bf16 (float32 on other CPUs); the server holds it to the float32 model's answers
and falls back to float32 where it strays (:mod:`sagedet.serve.engines`). The others ask for one
precision on any device (fp16 on CUDA only)."""

_DTYPES = {"float32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
NAMES = {None: "float32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 on CUDA GPUs with bf16 tensor cores, else fp16 (with a gradient scaler in training); None
    (float32) off CUDA."""
    if device.type != "cuda":
        return None
    major, _ = torch.cuda.get_device_capability(device)
    return torch.bfloat16 if major >= BF16_MIN_COMPUTE_CAPABILITY else torch.float16


def exact_float32(device: torch.device) -> None:
    """Float32 that is float32 on ``device``, for this process. On CUDA, cuDNN's convolutions run in TF32
    unless told not to (``torch.backends.cudnn.allow_tf32``, on by default: a 10-bit mantissa on Ampere
    and newer), which moves a model's outputs by far more than float32 rounding: emulated on the CPU,
    mobilenet-v3 with random weights by 0.075, vgg-16 by 3e-3. The server's float32 paths are held to
    each other within 1e-2 and its reduced precision to a float32 reference, so both must be IEEE float32.
    Autocast's bf16 and fp16 convolutions are unaffected. Training keeps torch's default."""
    if device.type == "cuda":
        # The switch for conv and RNN alike: setting conv's new fp32_precision alone makes reading this raise.
        torch.backends.cudnn.allow_tf32 = False


@contextmanager
def cudnn_tf32(allowed: bool) -> Iterator[None]:
    """cuDNN's TF32 convolutions on or off within the block, its other settings as they are."""
    cudnn = torch.backends.cudnn
    with cudnn.flags(enabled=cudnn.enabled, benchmark=cudnn.benchmark, deterministic=cudnn.deterministic,
                     allow_tf32=allowed):
        yield


def inference_dtype(precision: str, device: torch.device, source: str = "SAGEDET_PRECISION") -> torch.dtype | None:
    """The autocast dtype the server runs the model under for ``precision`` (one of :data:`PRECISIONS`)
    on ``device``, None for float32 (under ``auto`` on the CPU the server also races float32 paths). Raises ConfigError, naming ``source``, for a precision the device
    cannot run: fp16 off CUDA (the CPU has no fast fp16 convolutions), bf16 on a GPU without bf16 tensor
    cores (it would be emulated, slower than fp16)."""
    if precision == "auto":
        if device.type == "cpu":
            return torch.bfloat16 if cpu_has_native_bf16() else None
        return amp_dtype(device)
    if precision not in _DTYPES:  # SAGEDET_PRECISION is checked with the other settings; --precision here
        raise ConfigError(f"{source} {precision!r}: expected one of {', '.join(PRECISIONS)}")
    dtype = _DTYPES[precision]
    if dtype == torch.float16 and device.type != "cuda":
        raise ConfigError(f"{source}=fp16 needs a CUDA device; on {device} use bf16 (CPUs with AVX512_BF16 or "
                          f"AMX run it natively) or float32")
    if dtype == torch.bfloat16 and device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        if major < BF16_MIN_COMPUTE_CAPABILITY:
            raise ConfigError(f"{source}=bf16 needs a GPU with bf16 tensor cores (compute capability "
                              f"{BF16_MIN_COMPUTE_CAPABILITY}.0 or newer); {device} has {major}.{minor}: use fp16 "
                              f"or auto")
    return dtype


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512_BF16: Cooper Lake, Sapphire Rapids and later
    Xeons, AMD Zen 4 and later; AMX). Elsewhere oneDNN emulates bf16, slower than float32."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
