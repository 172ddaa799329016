"""The inference server's environment → ServeSettings (no server started)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import fake_gpus

from sagedet.errors import ConfigError
from sagedet.serve.settings import load_settings


def settings(env: dict[str, str], cpus: int = 4, gpus: int = 0):
    return load_settings(env, gpus=lambda: gpus, cpus=lambda: cpus)


def test_defaults_are_sagemakers():
    s = settings({})
    assert s.model_dir == Path("/opt/ml/model")
    assert (s.host, s.port, s.timeout, s.max_payload_mb) == ("0.0.0.0", 8080, 60, 6)
    assert s.max_payload_bytes == 6 * 1024 * 1024
    assert (s.score_threshold, s.max_detections, s.max_image_pixels, s.device) == (0.0, 200, 64_000_000, "auto")
    assert (s.batch, s.batch_strategy, s.max_concurrent_transforms) == (False, None, None)
    assert s.execution_parameters() == {"MaxConcurrentTransforms": 4, "BatchStrategy": "SINGLE_RECORD",
                                        "MaxPayloadInMB": 6}


@pytest.mark.parametrize(("cpus", "gpus", "device", "workers"), [
    (4, 0, "auto", 4), (1, 0, "auto", 1), (96, 0, "auto", 8), (8, 1, "auto", 1), (32, 4, "auto", 4), (8, 4, "cpu", 8),
])
def test_default_workers_one_per_gpu_else_per_cpu(cpus, gpus, device, workers):
    assert settings({"SAGEDET_DEVICE": device}, cpus, gpus).workers == workers


def test_gpus_are_not_counted_when_the_workers_are_given():
    def no_count():
        raise AssertionError("counted GPUs")
    assert load_settings({"SAGEMAKER_MODEL_SERVER_WORKERS": "3"}, gpus=no_count).workers == 3


def test_torch_threads_share_the_cpus_out():
    assert settings({"SAGEMAKER_MODEL_SERVER_WORKERS": "2"}).torch_threads(8) == 4
    assert settings({"SAGEMAKER_MODEL_SERVER_WORKERS": "16"}).torch_threads(8) == 1


def test_torch_threads_per_worker_can_be_set():
    assert settings({"SAGEMAKER_MODEL_SERVER_WORKERS": "1", "SAGEDET_TORCH_THREADS": "1"}).torch_threads(8) == 1
    assert settings({"SAGEMAKER_MODEL_SERVER_WORKERS": "4", "SAGEDET_TORCH_THREADS": "3"}).torch_threads(8) == 3


def test_values_are_read():
    s = settings({"SAGEDET_OPT_ML": "/data/ml", "SAGEMAKER_BIND_TO_PORT": "9000", "SAGEMAKER_MODEL_SERVER_WORKERS": "3",
                  "SAGEMAKER_MODEL_SERVER_TIMEOUT": "120", "SAGEMAKER_MAX_PAYLOAD_IN_MB": "0",
                  "SAGEDET_BIND_HOST": "127.0.0.1", "SAGEDET_SCORE_THRESHOLD": "0.25", "SAGEDET_MAX_DETECTIONS": "50",
                  "SAGEDET_MAX_IMAGE_PIXELS": "1000000", "SAGEDET_DEVICE": "CUDA:1", "SAGEMAKER_BATCH": "True",
                  "SAGEMAKER_BATCH_STRATEGY": "SingleRecord", "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS": "1"})
    assert s.model_dir == Path("/data/ml/model")
    assert (s.port, s.workers, s.timeout, s.max_payload_mb, s.max_payload_bytes) == (9000, 3, 120, 0, None)
    assert (s.host, s.score_threshold, s.max_detections, s.max_image_pixels) == ("127.0.0.1", 0.25, 50, 1_000_000)
    assert (s.device, s.batch, s.batch_strategy, s.max_concurrent_transforms) == ("cuda:1", True, "SINGLE_RECORD", 1)
    assert s.execution_parameters() == {"MaxConcurrentTransforms": 3, "BatchStrategy": "SINGLE_RECORD",
                                        "MaxPayloadInMB": 0}


def test_every_bad_value_is_named_at_once():
    with pytest.raises(ConfigError) as raised:
        settings({"SAGEMAKER_BIND_TO_PORT": "70000", "SAGEMAKER_MODEL_SERVER_WORKERS": "two",
                  "SAGEMAKER_MODEL_SERVER_TIMEOUT": "0", "SAGEMAKER_MAX_PAYLOAD_IN_MB": "-1",
                  "SAGEDET_SCORE_THRESHOLD": "nan", "SAGEDET_MAX_DETECTIONS": "5000", "SAGEDET_DEVICE": "tpu",
                  "SAGEMAKER_BATCH": "maybe", "SAGEMAKER_BATCH_STRATEGY": "EVERYTHING", "SAGEDET_BIND_HOST": "a b",
                  "SAGEDET_TORCH_THREADS": "0"})
    lines = str(raised.value).splitlines()
    assert lines[0] == "invalid inference server environment:"
    assert [line.strip() for line in lines[1:]] == [
        "SAGEDET_DEVICE='tpu': expected auto, cpu, cuda or cuda:N",
        "SAGEMAKER_MODEL_SERVER_WORKERS='two': expected an integer >= 1",
        "SAGEDET_BIND_HOST='a b': expected an address such as 0.0.0.0 or 127.0.0.1",
        "SAGEMAKER_BIND_TO_PORT='70000': expected an integer from 1 to 65535",
        "SAGEMAKER_MODEL_SERVER_TIMEOUT='0': expected an integer >= 1",
        "SAGEMAKER_MAX_PAYLOAD_IN_MB='-1': expected an integer >= 0",
        "SAGEDET_SCORE_THRESHOLD='nan': expected a number from 0 to 1",
        "SAGEDET_MAX_DETECTIONS='5000': expected an integer from 1 to 1000",
        "SAGEMAKER_BATCH='maybe': expected true or false",
        "SAGEMAKER_BATCH_STRATEGY='EVERYTHING': expected SINGLE_RECORD or MULTI_RECORD",
        "SAGEDET_TORCH_THREADS='0': expected an integer from 1 to 256",
    ]


def test_empty_values_mean_the_default():
    assert settings({"SAGEMAKER_BIND_TO_PORT": "", "SAGEMAKER_MODEL_SERVER_TIMEOUT": " "}).port == 8080


def test_inference_path_and_request_batching_defaults():
    s = settings({})
    assert s.inference_path == "auto"
    assert (s.batch_limit("cuda"), s.batch_limit("cpu"), s.batch_delay_ms) == (16, 1, 5.0)


def test_inference_path_and_request_batching_are_read():
    s = settings({"SAGEDET_INFERENCE_PATH": "TorchScript", "SAGEDET_BATCH_SIZE": "8", "SAGEDET_BATCH_DELAY_MS": "2.5"})
    assert (s.inference_path, s.batch_limit("cpu"), s.batch_limit("cuda"), s.batch_delay_ms) == (
        "torchscript", 8, 8, 2.5)


def test_bad_inference_path_and_batching_values_are_named():
    with pytest.raises(ConfigError) as error:
        settings({"SAGEDET_INFERENCE_PATH": "tensorrt", "SAGEDET_BATCH_SIZE": "0", "SAGEDET_BATCH_DELAY_MS": "-1"})
    message = str(error.value)
    assert "SAGEDET_INFERENCE_PATH='tensorrt': expected one of auto, eager, torchscript, winograd, onnxruntime" in message
    assert "SAGEDET_BATCH_SIZE='0': expected an integer from 1 to 256" in message
    assert "SAGEDET_BATCH_DELAY_MS='-1': expected a number from 0 to 1000" in message


def test_gpus_are_counted_without_asking_cuda_whether_it_is_available(monkeypatch):
    """is_available calls cudaGetDeviceCount, which initialises the driver in the gunicorn master and
    breaks CUDA in the workers it forks; device_count asks NVML first."""
    import torch

    from sagedet.serve.settings import count_gpus

    def refuse():
        raise AssertionError("torch.cuda.is_available() was called")

    monkeypatch.setattr(torch.cuda, "is_available", refuse)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    assert count_gpus() == 3


@pytest.mark.parametrize(("name", "slot", "expected"), [
    ("auto", 3, "cuda:1"), ("cuda", 3, "cuda:1"), ("cuda", 0, "cuda:0"), ("cuda:0", 3, "cuda:0"), ("cpu", 3, "cpu"),
])
def test_a_worker_gets_an_indexed_device(monkeypatch, name: str, slot: int, expected: str):
    """On a machine with 2 GPUs (counted as torch counts them): ``cuda`` shares the workers out between
    the GPUs as ``auto`` does, with the index that torch.cuda.set_device needs (an index-less ``cuda``
    made every worker's set_device raise ValueError); ``cuda:N`` puts every worker on GPU N."""
    import torch

    from sagedet.serve.predictor import resolve_device

    fake_gpus(monkeypatch, 2)
    assert resolve_device(name, slot) == torch.device(expected)


def test_cuda_on_a_machine_without_it_is_refused_by_name(monkeypatch):
    import torch

    from sagedet.serve.predictor import resolve_device

    fake_gpus(monkeypatch, 0)
    assert resolve_device("auto", 1) == torch.device("cpu")
    with pytest.raises(ConfigError, match="SAGEDET_DEVICE=cuda: CUDA is not available on this machine"):
        resolve_device("cuda", 1)
    with pytest.raises(ConfigError, match="SAGEDET_DEVICE=cuda:1: CUDA is not available on this machine"):
        resolve_device("cuda:1", 0)
