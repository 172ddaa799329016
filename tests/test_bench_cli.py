"""The benchmark scripts refuse a CUDA device on a machine without one, saying what to use instead."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("script", ["train_throughput.py", "inference_throughput.py"])
def test_device_cuda_without_cuda_is_refused_with_the_alternative(script: str):
    result = subprocess.run([sys.executable, str(BENCH / script), "--device", "cuda"], cwd=BENCH,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "--device cuda: CUDA is not available on this machine; use --device cpu" in result.stderr
