"""The autocast dtype by device: bf16 only on GPUs with bf16 tensor cores (no GPU here: the capability query
is answered by the test, as a V100, T4, A100 or H100 would answer it)."""

from __future__ import annotations

import pytest
import torch

from sagedet.model.precision import amp_dtype, exact_float32


@pytest.mark.parametrize("capability, want", [((7, 0), torch.float16), ((7, 5), torch.float16),
                                              ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)],
                         ids=["V100", "T4", "A100", "H100"])
def test_cuda_gets_bf16_only_with_bf16_tensor_cores(monkeypatch, capability, want):
    asked = []
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: asked.append(device) or capability)
    # torch.cuda.is_bf16_supported() says True on a T4 too (it counts emulation): it must not decide
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert amp_dtype(torch.device("cuda", 1)) == want
    assert asked == [torch.device("cuda", 1)]  # the device's own capability, not the current device's


def test_the_cpu_computes_in_float32():
    assert amp_dtype(torch.device("cpu")) is None


def test_float32_on_cuda_is_ieee_not_tf32(monkeypatch):
    """cuDNN runs float32 convolutions in TF32 by default: the server turns that off on CUDA (its float32
    paths and the reference its bf16 is held to) and leaves it alone for a CPU worker."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)  # torch's default, restored afterwards
    exact_float32(torch.device("cpu"))
    assert torch.backends.cudnn.allow_tf32
    exact_float32(torch.device("cuda", 0))
    assert not torch.backends.cudnn.allow_tf32
    assert torch.backends.cudnn.conv.fp32_precision != "tf32"
