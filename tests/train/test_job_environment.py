"""sagedet's own variables for a training job (SAGEDET_DEVICE, SAGEDET_DATA_WORKERS), read once at the start."""

from __future__ import annotations

import pytest
import torch

from sagedet.errors import ConfigError
from sagedet.train.job import _runtime, default_data_workers, read_job_environment


@pytest.mark.parametrize("text, workers", [("0", 0), ("3", 3), (" 2 ", 2), ("", None)])
def test_data_workers_are_a_count_or_the_default(text, workers):
    environment = read_job_environment({"SAGEDET_DEVICE": "cpu", "SAGEDET_DATA_WORKERS": text})
    assert environment.data_workers == workers and environment.device == torch.device("cpu")
    expected = default_data_workers(torch.device("cpu"), 1) if workers is None else workers
    assert _runtime(environment).data_workers == expected


def test_unset_data_workers_mean_the_default():
    assert read_job_environment({"SAGEDET_DEVICE": "cpu"}).data_workers is None


@pytest.mark.parametrize("text", ["-1", "two", "1.5"])
def test_data_workers_that_are_not_a_count_are_refused(text):
    with pytest.raises(ConfigError, match=rf"SAGEDET_DATA_WORKERS='{text}': expected an integer >= 0"):
        read_job_environment({"SAGEDET_DEVICE": "cpu", "SAGEDET_DATA_WORKERS": text})


def test_a_device_outside_the_choices_is_refused():
    with pytest.raises(ConfigError, match="SAGEDET_DEVICE='tpu'.*auto, cpu, cuda or cuda:N"):
        read_job_environment({"SAGEDET_DEVICE": "tpu"})

