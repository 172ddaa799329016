"""SAGEDET_DEVICE on machines with GPUs that PyTorch can and cannot use (torch.cuda's queries stood in
for: this project's machines have no GPU)."""

from __future__ import annotations

import re

import pytest
import torch
from conftest import CUDA13_ARCHES, fake_gpus

from sagedet.devices import auto_device_type, has_kernels_for, present_device
from sagedet.errors import ConfigError
from sagedet.serve.predictor import resolve_device
from sagedet.train.job import _device


@pytest.mark.parametrize("capability, arches, runs", [
    ((7, 0), CUDA13_ARCHES, False),  # V100 (ml.p3): CUDA 13 builds dropped Volta
    ((7, 5), CUDA13_ARCHES, True),  # T4
    ((8, 0), CUDA13_ARCHES, True),  # A100
    ((8, 9), CUDA13_ARCHES, True),  # L4: sm_86 machine code runs on 8.9
    ((9, 0), CUDA13_ARCHES, True),  # H100
    ((12, 1), CUDA13_ARCHES, True),
    ((13, 0), CUDA13_ARCHES, False),  # a newer major version needs PTX
    ((13, 0), CUDA13_ARCHES + ["compute_120"], True),
    ((9, 0), ["sm_90a"], True),
])
def test_which_gpus_a_build_has_kernels_for(capability, arches, runs):
    assert has_kernels_for(capability, arches) is runs


def test_auto_is_the_cpu_without_gpus_and_cuda_with_usable_ones(monkeypatch):
    fake_gpus(monkeypatch, 0)
    assert auto_device_type("SAGEDET_DEVICE=auto") == "cpu"
    assert _device(None) == torch.device("cpu")
    fake_gpus(monkeypatch, 8)
    assert auto_device_type("SAGEDET_DEVICE=auto") == "cuda"
    assert _device(None) == torch.device("cuda")
    assert resolve_device("auto", 9) == torch.device("cuda", 1)


def test_gpus_that_cuda_cannot_start_on_are_an_error_not_a_cpu_job(monkeypatch):
    """A driver older than the build's CUDA: NVML counts the GPUs and CUDA opens none. torch only warns,
    so auto would train on the CPU of a GPU instance and the server would run every worker on it."""
    fake_gpus(monkeypatch, 4, usable=False)
    said = (rf"has 4 GPU\(s\), but PyTorch {re.escape(torch.__version__)} \(CUDA {torch.version.cuda}\) cannot start CUDA on "
            rf"them: the NVIDIA driver is likely older .*TORCH_INDEX_URL.* or set SAGEDET_DEVICE=cpu")
    with pytest.raises(ConfigError, match=r"^SAGEDET_DEVICE \(not set: auto\): this machine " + said):
        _device(None)
    with pytest.raises(ConfigError, match=r"^SAGEDET_DEVICE=auto: this machine " + said):
        resolve_device("auto", 0)
    with pytest.raises(ConfigError, match=r"^SAGEDET_DEVICE=cuda:1: this machine " + said):
        present_device("cuda:1", "SAGEDET_DEVICE=cuda:1")
    assert _device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("name", ["auto", "cuda", "cuda:0"])
def test_a_gpu_the_build_has_no_kernels_for_is_named(monkeypatch, name):
    fake_gpus(monkeypatch, 1, capability=(7, 0), name="Tesla V100-SXM2-16GB")
    with pytest.raises(ConfigError, match=rf"^SAGEDET_DEVICE={name}: GPU 0 \(Tesla V100-SXM2-16GB\) has compute "
                                          rf"capability 7.0, and PyTorch .* has no kernels for it \(built for sm_75 "
                                          rf"sm_80 sm_86 sm_90 sm_100 sm_120\); build the image with TORCH_INDEX_URL"):
        resolve_device(name, 0)
    with pytest.raises(ConfigError, match="GPU 0 \\(Tesla V100-SXM2-16GB\\) has compute capability 7.0"):
        _device(name)
