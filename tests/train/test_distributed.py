"""The distributed launcher's parts that need no second host: planning, name resolution, the
torchrun environment, and how the launcher reports its processes' ends."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from sagedet.errors import ConfigError, SagedetError
from sagedet.sagemaker.resources import Resources
from sagedet.train.distributed import SOLO, Collective, Rank, Topology, launch, plan, resolve


def test_plan_one_process_per_gpu_node_rank_from_the_host_order():
    resources = Resources("algo-2", ("algo-1", "algo-2", "algo-3"), "eth0")
    topology = plan(resources, gpus=4)
    assert (topology.node_rank, topology.local_processes, topology.world_size) == (1, 4, 12)
    assert topology.distributed and topology.interface == "eth0"
    assert not plan(Resources("algo-1", ("algo-1",), None), gpus=0).distributed
    assert plan(Resources("algo-1", ("algo-1",), None), gpus=2).distributed


def test_resolve_uses_the_override_then_dns(monkeypatch):
    monkeypatch.setenv("SAGEDET_HOST_ADDRESSES", json.dumps({"algo-1": "127.0.0.9"}))
    assert resolve("algo-1") == "127.0.0.9"
    assert resolve("localhost", timeout=5) == "127.0.0.1"  # not in the map: DNS (here /etc/hosts)


def test_resolve_retries_then_names_the_host(monkeypatch):
    monkeypatch.delenv("SAGEDET_HOST_ADDRESSES", raising=False)
    with pytest.raises(SagedetError, match=r"cannot resolve host 'algo-1.invalid' .* within 0.3 s"):
        resolve("algo-1.invalid", timeout=0.3, poll=0.1)


def test_a_bad_override_is_named(monkeypatch):
    monkeypatch.setenv("SAGEDET_HOST_ADDRESSES", "algo-1=127.0.0.1")
    with pytest.raises(ConfigError, match="SAGEDET_HOST_ADDRESSES='algo-1=127.0.0.1': expected a JSON object"):
        resolve("algo-1")


def test_rank_from_torchrun_environment():
    assert Rank.from_env({}) is None
    rank = Rank.from_env({"RANK": "5", "LOCAL_RANK": "1", "WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "4"})
    assert rank == Rank(5, 1, 8, 4) and rank.node_rank == 1 and not rank.is_main
    with pytest.raises(ConfigError):
        Rank.from_env({"RANK": "x", "WORLD_SIZE": "2"})


def test_one_process_collectives_are_the_identity():
    collective = Collective(SOLO, torch.device("cpu"))
    assert not collective.active
    assert collective.step(True, False) == (True, False) and collective.step(False, True) == (False, True)
    assert collective.all_gather([1, 2]) == [[1, 2]] and collective.broadcast({"a": 1}) == {"a": 1}


GLOO_RESET = ("[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:545] Read error [127.0.0.1]:44433: "
              "Connection reset by peer. This is typically caused by a remote worker hanging or bugs in the application.")


def test_a_peer_lost_inside_the_model_step_is_named_as_lost_contact():
    """DDP's own collectives (buffers in the forward pass, gradients in the backward) raise gloo's
    error when another process vanished (seen in CI: the host was killed during a backward pass)."""
    collective = Collective(Rank(0, 0, 2, 1), torch.device("cpu"))
    with pytest.raises(SagedetError, match=r"^lost contact with another training process \(host or GPU\): \[.*"
                                           r"gloo.*Connection reset by peer\..*; that process's failure file says "
                                           r"why it stopped$"):
        with collective.model_step():
            raise RuntimeError(GLOO_RESET)
    with pytest.raises(RuntimeError, match="^CUDA out of memory"):  # not a communication error: as it is
        with collective.model_step():
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
    with pytest.raises(RuntimeError, match="gloo"):  # one process: no peer to lose, nothing renamed
        with Collective(SOLO, torch.device("cpu")).model_step():
            raise RuntimeError(GLOO_RESET)


WORKER = """
import os, pathlib, sys
rank = int(os.environ["RANK"])
assert os.environ["WORLD_SIZE"] == "4" and os.environ["LOCAL_WORLD_SIZE"] == "2"
assert os.environ["MASTER_ADDR"] == "127.0.0.1" and os.environ["MASTER_PORT"] == "29999"
assert os.environ["GLOO_SOCKET_IFNAME"] == "lo"
if rank == int(sys.argv[1]):
    pathlib.Path(os.environ["SAGEDET_WORKER_FAILURE_FILE"]).write_text("record 7 is bad")
    sys.exit(1)
"""


@pytest.mark.parametrize("failing", [2, 3, -1])
def test_launch_starts_the_local_processes_and_reports_the_failing_one(monkeypatch, failing):
    monkeypatch.setenv("SAGEDET_HOST_ADDRESSES", json.dumps({"algo-1": "127.0.0.1"}))
    monkeypatch.setenv("SAGEDET_MASTER_PORT", "29999")
    topology = Topology(("algo-1", "algo-2"), node_rank=1, local_processes=2, interface="lo")
    said = []
    result = launch(topology, [sys.executable, "-c", WORKER, str(failing)], said.append)
    assert "2 host(s) x 2 process(es); this host is node 1; rendezvous algo-1 (127.0.0.1:29999)" in said[0]
    if failing < 0:
        assert (result.code, result.reason) == (0, None)
    else:
        assert result.code == 1
        assert result.reason == f"training process {failing} failed (exit code 1): record 7 is bad"


def test_one_host_with_several_processes_meets_on_loopback_without_dns(monkeypatch):
    """A GPU machine outside SageMaker (docker run --gpus all): resourceconfig.json is absent, the one host
    is called algo-1 and that name resolves nowhere; the processes meet on 127.0.0.1 at once."""
    monkeypatch.delenv("SAGEDET_HOST_ADDRESSES", raising=False)
    monkeypatch.setenv("SAGEDET_DNS_TIMEOUT", "0")
    topology = Topology(("algo-1",), node_rank=0, local_processes=2, interface=None)
    said = []
    script = "import os, sys; sys.exit(0 if os.environ['MASTER_ADDR'] == '127.0.0.1' else 5)"
    result = launch(topology, [sys.executable, "-c", script], said.append)
    assert (result.code, result.reason) == (0, None)
    assert "rendezvous algo-1 (127.0.0.1:" in said[0]


def test_a_process_that_aborts_without_a_reason_is_named_with_the_likely_cause(monkeypatch):
    topology = Topology(("algo-1",), node_rank=0, local_processes=1, interface=None)
    result = launch(topology, [sys.executable, "-c", "import os; os.abort()"], lambda message: None)
    assert result.code == -6
    assert result.reason.startswith("training process 0 failed (exit code -6): it aborted (SIGABRT) before it could "
                                    "write its reason: a native abort, such as NCCL's watchdog")


def test_a_stop_while_the_processes_still_start_is_a_stop_not_a_failure(monkeypatch):
    """SIGTERM forwarded to a worker that has not yet installed its own handler (it is still importing
    torch) kills it with the signal: the job stopped (143), it did not fail."""
    import os
    import signal
    import threading

    monkeypatch.setenv("SAGEDET_HOST_ADDRESSES", json.dumps({"algo-1": "127.0.0.1"}))
    topology = Topology(("algo-1",), node_rank=0, local_processes=2, interface=None)
    threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM)).start()
    result = launch(topology, [sys.executable, "-c", "import time; time.sleep(20)"], lambda message: None)
    assert (result.code, result.reason) == (143, None)


def test_a_worker_killed_by_a_signal_nobody_sent_is_a_failure(monkeypatch):
    monkeypatch.setenv("SAGEDET_HOST_ADDRESSES", json.dumps({"algo-1": "127.0.0.1"}))
    topology = Topology(("algo-1",), node_rank=0, local_processes=1, interface=None)
    result = launch(topology, [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"],
                    lambda message: None)
    assert (result.code, result.reason) == (-15, "training process 0 failed (exit code -15)")


def _job_config(tmp_path, mode: str, batch: str):
    from sagedet.sagemaker.channels import load_channels
    from sagedet.sagemaker.hyperparameters import load_hyperparameters
    from sagedet.sagemaker.local import write_training_config
    from sagedet.sagemaker.paths import SageMakerPaths
    from sagedet.sagemaker.resources import load_resources

    paths = SageMakerPaths(tmp_path)
    channels = {name: {"ContentType": "application/x-recordio", "TrainingInputMode": mode} for name in ("train", "validation")}
    for name in channels:
        paths.channel_dir(name).mkdir(parents=True)
    write_training_config(paths, {"num_classes": "3", "num_training_samples": "8", "mini_batch_size": batch}, channels)
    return load_hyperparameters(paths.hyperparameters_file), load_channels(paths), load_resources(paths)


def test_pipe_mode_with_several_processes_on_a_host_is_refused(tmp_path):
    from sagedet.train.job import _distributed_runtime
    from sagedet.train.loop import Runtime

    config, channels, resources = _job_config(tmp_path, "Pipe", "8")
    with pytest.raises(ConfigError, match="Pipe mode with 2 training processes on one host is not supported"):
        _distributed_runtime(Runtime(torch.device("cpu")), config, channels, resources, Rank(0, 0, 2, 2))


def test_a_batch_smaller_than_the_gpus_of_a_host_is_refused(tmp_path):
    from sagedet.train.job import _distributed_runtime
    from sagedet.train.loop import Runtime

    config, channels, resources = _job_config(tmp_path, "File", "3")
    with pytest.raises(ConfigError, match="'mini_batch_size'=3 is smaller than the 4 GPUs of a host.*use >= 4"):
        _distributed_runtime(Runtime(torch.device("cpu")), config, channels, resources, Rank(0, 0, 4, 4))
    runtime = _distributed_runtime(Runtime(torch.device("cpu")), config, channels, resources, Rank(1, 1, 2, 2))
    assert runtime.batch_size == 1 and (runtime.train_shard.index, runtime.train_shard.count) == (1, 2)


def test_processes_on_a_host_share_its_cores_unless_the_workers_are_set(tmp_path):
    """Several training processes on one host: the set count holds for each, else the cores are shared out."""
    from sagedet.train.job import _distributed_runtime, default_data_workers
    from sagedet.train.loop import Runtime

    config, channels, resources = _job_config(tmp_path, "File", "8")
    runtime = Runtime(torch.device("cpu"), data_workers=7)
    shared = _distributed_runtime(runtime, config, channels, resources, Rank(0, 0, 2, 2))
    assert shared.data_workers == default_data_workers(torch.device("cpu"), 2)
    chosen = _distributed_runtime(runtime, config, channels, resources, Rank(0, 0, 2, 2), data_workers=3)
    assert chosen.data_workers == 3


def test_a_batch_norm_network_gets_two_images_per_gpu_unless_synchronized(tmp_path, capsys):
    from sagedet.sagemaker.hyperparameters import parse_hyperparameters
    from sagedet.train.job import _distributed_runtime
    from sagedet.train.loop import Runtime

    _, channels, resources = _job_config(tmp_path, "File", "8")
    for network in ("mobilenet-v3", "resnet-50"):  # resnet-50 is synchronized on CUDA only
        config = parse_hyperparameters({"num_classes": "3", "num_training_samples": "8", "mini_batch_size": "9",
                                        "base_network": network})
        with pytest.raises(ConfigError, match=rf"'mini_batch_size'=9 gives each of the 8 GPUs of a host 1 image a "
                                              rf"step, too few for base_network={network}.*use >= 16"):
            _distributed_runtime(Runtime(torch.device("cpu")), config, channels, resources, Rank(0, 0, 8, 8))
    config = parse_hyperparameters({"num_classes": "3", "num_training_samples": "8", "mini_batch_size": "9",
                                    "base_network": "vgg-16"})
    runtime = _distributed_runtime(Runtime(torch.device("cpu")), config, channels, resources, Rank(0, 0, 8, 8))
    assert runtime.batch_size == 1
    assert "mini_batch_size=9 is shared out between 8 GPUs as 1 image(s) each: 8 a step" in capsys.readouterr().out


@pytest.mark.parametrize(("device", "rank", "expected"), [
    ("cuda:1", Rank(1, 0, 2, 1), "cuda:1"),  # SAGEDET_DEVICE=cuda:1 on two hosts: one process each, on GPU 1
    ("cuda", Rank(3, 1, 4, 2), "cuda:1"),  # all GPUs: process 1 of a host on its GPU 1
])
def test_each_process_trains_on_its_gpu(tmp_path, monkeypatch, device: str, rank: Rank, expected: str):
    """Only torch.cuda.set_device is stood in for (this machine has no GPU): which device a training
    process takes and makes current."""
    from sagedet.train.job import _distributed_runtime
    from sagedet.train.loop import Runtime

    current = []
    monkeypatch.setattr(torch.cuda, "set_device", current.append)
    config, channels, resources = _job_config(tmp_path, "File", "8")
    runtime = _distributed_runtime(Runtime(torch.device(device)), config, channels, resources, rank)
    assert runtime.device == torch.device(expected)
    assert current == [torch.device(expected)]
