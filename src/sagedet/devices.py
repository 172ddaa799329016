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
    """A parsed ``cpu``, ``cuda`` or ``cuda:N`` as a device, if this machine has it and PyTorch can run on
    it (:func:`check_usable_gpus`); ConfigError naming ``what`` otherwise."""
    device = torch.device(name)
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if count == 0:
            raise ConfigError(f"{what}: CUDA is not available on this machine")
        if device.index is not None and device.index >= count:
            raise ConfigError(f"{what}: this machine has {count} GPU(s), cuda:0 to cuda:{count - 1}")
        check_usable_gpus(what, [device.index] if device.index is not None else range(count))
    return device


def auto_device_type(what: str) -> str:
    """``auto``'s device: "cuda" where PyTorch can run on this machine's GPUs, "cpu" where it has none.
    A GPU machine whose GPUs PyTorch cannot use is a ConfigError naming ``what``, not a silent CPU job."""
    count = torch.cuda.device_count()  # NVML's count where it can: GPUs that CUDA may fail to open
    if count == 0:
        return "cpu"
    check_usable_gpus(what, range(count))
    return "cuda"


def check_usable_gpus(what: str, indices) -> None:
    """ConfigError naming ``what`` where PyTorch cannot run on the GPUs ``indices``: CUDA does not start
    (the driver is older than this PyTorch's CUDA needs: NVML counts the GPUs, the runtime opens none),
    or PyTorch has no kernels for a GPU's compute capability (CUDA 13 builds dropped Volta, the V100 of
    SageMaker's p3 instances). PyTorch itself only warns of either, then fails at the first kernel."""
    build = f"PyTorch {torch.__version__} (CUDA {torch.version.cuda})"
    remedy = ("build the image with TORCH_INDEX_URL set to a PyTorch index for an older CUDA (README, "
              "\"Images\"), or set SAGEDET_DEVICE=cpu")
    if not torch.cuda.is_available():
        raise ConfigError(f"{what}: this machine has {torch.cuda.device_count()} GPU(s), but {build} cannot start "
                          f"CUDA on them: the NVIDIA driver is likely older than CUDA {torch.version.cuda} needs "
                          f"(nvidia-smi shows the driver's CUDA version); {remedy}")
    built = torch.cuda.get_arch_list()
    for index in indices:
        capability = torch.cuda.get_device_capability(index)
        if built and not has_kernels_for(capability, built):
            raise ConfigError(f"{what}: GPU {index} ({torch.cuda.get_device_name(index)}) has compute capability "
                              f"{capability[0]}.{capability[1]}, and {build} has no kernels for it (built for "
                              f"{' '.join(built)}); {remedy}")


def has_kernels_for(capability: tuple[int, int], built: list[str]) -> bool:
    """Whether a build for ``built`` (``torch.cuda.get_arch_list()``: sm_XY machine code, compute_XY PTX)
    runs on a GPU of ``capability``: machine code of the same major version and a minor version no
    higher, or PTX of any version no higher (compiled for the GPU when loaded)."""
    for arch in built:
        found = re.fullmatch(r"(sm|compute)_(\d+)(\d)[a-z]?", arch)
        if found is None:
            continue
        kind, version = found[1], (int(found[2]), int(found[3]))
        if (kind == "sm" and version[0] == capability[0] and version[1] <= capability[1]
                or kind == "compute" and version <= capability):
            return True
    return False
