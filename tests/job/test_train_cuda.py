"""A training job on a GPU (mixed precision, channels-last, fused SGD, the batch's matching on the
device): it runs to the end and writes a model that the CPU loads and runs.

Skipped without CUDA (this project's CI has none). ``SAGEDET_TEST_DEVICE=cpu`` runs the same job on the
CPU, which is how the test's own logic is checked on a machine without a GPU; the GPU benchmark suite
(bench/gpu_suite.sh) runs it on a lent GPU.
"""

from __future__ import annotations

import json
import math
import os
import re

import pytest
import torch

from conftest import make_job, run_train
from sagedet.model.saved import load_detector

DEVICE = torch.device(os.environ.get("SAGEDET_TEST_DEVICE", "cuda"))
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(DEVICE.type == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.mark.parametrize("network, image_shape, optimizer", [("mobilenet-v3", "64", "adam"), ("vgg-16", "268", "sgd")])
def test_a_job_on_the_device_trains_and_writes_a_model_the_cpu_runs(tmp_path, network, image_shape, optimizer):
    hyperparameters = {
        "num_classes": "3", "num_training_samples": "8", "base_network": network, "use_pretrained_model": "0",
        "image_shape": image_shape, "epochs": "2", "mini_batch_size": "4", "optimizer": optimizer,
        "learning_rate": "0.001",
    }
    paths = make_job(tmp_path / "opt_ml", hyperparameters, train=8, validation=4)
    result = run_train(paths, SAGEDET_DEVICE=str(DEVICE))
    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    assert f"on {DEVICE.type}" in log.splitlines()[0]
    if DEVICE.type == "cuda":  # mixed precision, channels-last and a fused optimizer were in effect
        assert re.search(r"GPU training on cuda:\d \(.+\): (bf16|fp16) autocast.*, channels-last, (SGD|Adam) \(fused\)",
                         log), log
    losses = [float(line.rsplit("=", 1)[1]) for line in log.splitlines()
              if line.startswith("#quality_metric") and "train cross_entropy" in line]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    metrics = json.loads((paths.output_data_dir / "metrics.json").read_text())
    assert metrics
    model, _ = load_detector(paths.model_dir)  # on the CPU
    size = int(image_shape)
    with torch.no_grad():
        logits, codes = model.eval()(torch.rand(2, 3, size, size))
    assert torch.isfinite(logits).all() and torch.isfinite(codes).all() and logits.std() > 0
