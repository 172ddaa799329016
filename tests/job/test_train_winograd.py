"""CPU training converts vgg-16's deep 3x3 layers to Winograd F(4x4, 3x3) convolutions, times each
against torch's convolution and gives the slower back, and the model it writes is an ordinary one: the
server's eager model loads it and gives the trained model's outputs."""

from __future__ import annotations

import re

import pytest
import torch

from conftest import make_job, run_train
from sagedet.model.saved import load_detector

pytestmark = pytest.mark.slow


def test_a_vgg16_job_on_the_cpu_trains_with_winograd_layers_and_writes_a_plain_model(tmp_path):
    hyperparameters = {
        "num_classes": "3", "num_training_samples": "4", "base_network": "vgg-16", "use_pretrained_model": "0",
        "image_shape": "268", "epochs": "1", "mini_batch_size": "2", "optimizer": "sgd", "learning_rate": "0.001",
    }
    paths = make_job(tmp_path / "opt_ml", hyperparameters, train=4, validation=2)
    result = run_train(paths)
    assert result.returncode == 0, result.stdout + result.stderr
    # conv2_1 ... conv5_3 and the three extra 3x3 layers of SSD's vgg-16 (the heads have too few channels),
    # and for training steps only conv1_2
    assert ("CPU training: 12 3x3 convolutions computed by Winograd F(4x4, 3x3) on maps of 256 cells or more, "
            "F(6x6, 3x3) on maps of 4096 or more (same parameters and results to float32 rounding; fewer "
            "multiplications); 1 of them, narrower, in training steps only; validation runs those, and the others "
            "on maps where Winograd pays only with a backward pass, with torch's convolution") in (
        result.stdout + result.stderr)
    assert "CPU training: glibc malloc: mmap threshold 32 MiB, trim threshold 1024 MiB" in result.stdout + result.stderr
    # each of the 12 timed against torch's convolution on the job's 2 images; the slower given back
    timed = re.search(r"CPU training: Winograd against torch's convolution, forward and backward, timed layer by "
                      r"layer on 2 image\(s\) \(\d+ s\): Winograd kept for (\d+) of 12 layers \(\d+ ms against "
                      r"torch's \d+ ms\)(?:; torch's convolution for (\d+), where Winograd was slower: (.*))?",
                      result.stdout + result.stderr)
    assert timed, result.stdout + result.stderr
    given_back = int(timed.group(2) or 0)
    assert int(timed.group(1)) + given_back == 12
    assert given_back == 0 or len(re.findall(r"\(\d+ ms against \d+\)", timed.group(3))) == given_back
    model, _ = load_detector(paths.model_dir)
    assert not any(type(m).__name__ == "WinogradConv2d" for m in model.modules())
    images = torch.rand(1, 3, 268, 268)
    with torch.no_grad():
        logits, codes = model(images)
    assert torch.isfinite(logits).all() and torch.isfinite(codes).all() and logits.std() > 0
