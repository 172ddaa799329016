"""Two hosts on loopback: two separate ``container/train`` processes, each with its own /opt/ml tree
and resourceconfig.json (algo-1, algo-2), the host names mapped to 127.0.0.1 by
SAGEDET_HOST_ADDRESSES; they train one model together over gloo."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY_HYPERPARAMETERS, TRAIN_ENTRYPOINT, failure_reason, make_job, rec_bytes, run_train, train_env
from pipe_feeder import PipeFeeder

from sagedet.artifacts import load_model
from sagedet.data.imagejson import ImageJsonSource
from sagedet.data.loaders import build_loader
from sagedet.data.transforms import eval_transform, scale_pixels
from sagedet.evaluate.detections import ImageDetections
from sagedet.evaluate.voc_map import voc_map
from sagedet.model.ssd import build_ssd
from sagedet.data.synthetic import write_synthetic_dataset
from sagedet.sagemaker.local import write_training_config
from sagedet.sagemaker.paths import SageMakerPaths

HOSTS = ("algo-1", "algo-2")
EPOCHS = 3
HYPERPARAMETERS = {**TINY_HYPERPARAMETERS, "epochs": str(EPOCHS), "mini_batch_size": "6", "kv_store": "dist_sync"}
MAP_LINE = re.compile(r"#quality_metric: host=(\S+), epoch=(\d+), validation mAP <score>=\((\S+)\)")
SAME_MAP_TOLERANCE = 0.25
"""Two hosts (2 x 6 images a step) against one process (12 a step) on the same data: different
sample order, augmentation draws and per-process batch statistics, so the figures differ by noise."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def host_job(root: Path, host: str, hyperparameters: dict, train: int = 24, validation: int = 10) -> SageMakerPaths:
    paths = make_job(root / host, hyperparameters, train=train, validation=validation)
    write_training_config(paths, hyperparameters, hosts=HOSTS, current_host=host)
    resources = json.loads(paths.resource_config_file.read_text())
    paths.resource_config_file.write_text(json.dumps({**resources, "network_interface_name": "lo"}))
    return paths


def start(paths: SageMakerPaths, port: int) -> subprocess.Popen:
    env = train_env(paths, SAGEDET_HOST_ADDRESSES=json.dumps({h: "127.0.0.1" for h in HOSTS}),
                    SAGEDET_MASTER_PORT=str(port), SAGEDET_DIST_TIMEOUT="60", SAGEDET_DEVICE="cpu",
                    OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, str(TRAIN_ENTRYPOINT)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def maps(log: str) -> dict[int, float]:
    return {int(epoch): float(value) for _, epoch, value in MAP_LINE.findall(log)}


def evaluate_saved_model(paths: SageMakerPaths) -> float:
    """validation:mAP of the saved model over the whole validation channel, in this process."""
    state, metadata = load_model(paths.model_dir)
    model = build_ssd(metadata["base_network"], metadata["num_classes"], metadata["image_shape"])
    model.load_state_dict(state)
    model.eval()
    source = ImageJsonSource(paths.channel_dir("validation"), paths.channel_dir("validation_annotation"), 3,
                             "validation")
    results = []
    with torch.no_grad():
        for batch in build_loader(source, eval_transform(metadata["image_shape"]), 6, training=False, workers=0,
                                  pin_memory=False):
            detections = model.postprocess(*model(scale_pixels(batch.images)), metadata["nms_threshold"])
            for det, boxes, labels in zip(detections, batch.boxes.numpy(), batch.labels.numpy()):
                valid = labels >= 0
                results.append(ImageDetections(det.boxes.numpy(), det.scores.numpy(), det.labels.numpy(),
                                               boxes[valid], labels[valid], metadata["image_shape"],
                                               metadata["image_shape"]))
    return float(voc_map(results, 3, 0.5).mean_ap)


@pytest.mark.slow
def test_two_hosts_train_one_model_together(tmp_path):
    port = free_port()
    jobs = [host_job(tmp_path, host, HYPERPARAMETERS) for host in HOSTS]
    processes = [start(paths, port) for paths in jobs]
    logs = [process.communicate(timeout=600)[0] for process in processes]
    for process, log in zip(processes, logs):
        assert process.returncode == 0, log[-3000:]
    first, second = (maps(log) for log in logs)
    assert sorted(first) == list(range(EPOCHS))
    assert first == second  # one figure, computed once, logged by both hosts
    assert all(f"host={host}" in log for host, log in zip(HOSTS, logs))
    assert "distributed: 2 host(s) x 1 process(es); this host is node 1; rendezvous algo-1 (127.0.0.1:" in logs[1]
    assert "process 1 of 2" in logs[1]
    assert "reads part 1 of 2 of the training data and part 1 of 2 of the validation data, 6 images" in logs[0]

    main, other = jobs
    assert (main.model_dir / "model.safetensors").is_file()
    assert not (other.model_dir / "model.safetensors").exists()  # only one process writes the model
    assert (main.checkpoint_dir / "sagedet-checkpoint.pt").is_file()
    assert not any(other.checkpoint_dir.iterdir())
    metadata = json.loads((main.model_dir / "model.json").read_text())
    # the logged mAP is over the whole validation set: the saved (best) model scores the same here
    assert evaluate_saved_model(main) == pytest.approx(metadata["validation_mAP"], abs=1e-6)
    assert metadata["validation_mAP"] == pytest.approx(max(first.values()), abs=1e-6)

    single = make_job(tmp_path / "single", {**HYPERPARAMETERS, "mini_batch_size": "12"}, train=24, validation=10)
    result = run_train(single, timeout=600, SAGEDET_DEVICE="cpu")
    assert result.returncode == 0, result.stderr[-3000:]
    alone = maps(result.stdout)
    print(f"best validation mAP: two hosts {max(first.values()):.4f}, one process {max(alone.values()):.4f}")
    assert abs(max(alone.values()) - max(first.values())) <= SAME_MAP_TOLERANCE, (alone, first)


@pytest.mark.slow
def test_two_hosts_give_the_same_winograd_layers_back_as_process_0_timed_them(tmp_path):
    hyperparameters = {**HYPERPARAMETERS, "base_network": "vgg-16", "image_shape": "268", "epochs": "1",
                       "mini_batch_size": "2", "num_training_samples": "8"}
    port = free_port()
    jobs = [host_job(tmp_path, host, hyperparameters, train=8, validation=4) for host in HOSTS]
    processes = [start(paths, port) for paths in jobs]
    logs = [process.communicate(timeout=600)[0] for process in processes]
    for process, log in zip(processes, logs):
        assert process.returncode == 0, log[-3000:]
    timed = re.search(r"Winograd kept for (\d+) of (\d+) layers .*?(?:; torch's convolution for (\d+),|\n)", logs[0])
    assert timed, logs[0][-3000:]
    assert "timed layer by layer" not in logs[1]  # only process 0 times
    given_back = int(timed.group(3) or 0)
    assert int(timed.group(1)) + given_back == int(timed.group(2)) == 12
    assert (f"CPU training: {given_back} Winograd layer(s) given back to torch's convolution, as process 0 timed "
            f"them") in logs[1]


@pytest.mark.slow
def test_when_a_host_dies_the_other_fails_within_the_bound(tmp_path):
    port = free_port()
    hyperparameters = {**HYPERPARAMETERS, "epochs": "200"}
    jobs = [host_job(tmp_path, host, hyperparameters) for host in HOSTS]
    processes = [start(paths, port) for paths in jobs]
    wait_for_first_epoch(jobs[0], processes)
    os.killpg(processes[1].pid, signal.SIGKILL)  # algo-2 and its training process vanish
    killed = time.monotonic()
    log = processes[0].communicate(timeout=120)[0]
    waited = time.monotonic() - killed
    processes[1].communicate()
    print(f"algo-1 exited {processes[0].returncode} {waited:.1f} s after algo-2 was killed")
    assert processes[0].returncode not in (0, 143), log[-3000:]
    assert waited < 90, f"algo-1 took {waited:.0f} s to notice"
    reason = failure_reason(jobs[0])
    assert reason.startswith("training process 0 failed"), reason
    assert "lost contact with another training process" in reason


def wait_for_first_epoch(paths: SageMakerPaths, processes: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + 300
    while not (paths.output_data_dir / "metrics.json").exists():
        assert time.monotonic() < deadline, "training did not get through an epoch"
        assert all(p.poll() is None for p in processes), [p.communicate()[0][-2000:] for p in processes]
        time.sleep(0.5)


@pytest.mark.slow
def test_two_hosts_resume_a_one_process_checkpoint(tmp_path):
    single = make_job(tmp_path / "single", {**HYPERPARAMETERS, "epochs": "2"}, train=24, validation=10)
    result = run_train(single, timeout=600, SAGEDET_DEVICE="cpu")
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = [host_job(tmp_path, host, HYPERPARAMETERS) for host in HOSTS]
    checkpoint = single.checkpoint_dir / "sagedet-checkpoint.pt"
    (jobs[0].checkpoint_dir / checkpoint.name).write_bytes(checkpoint.read_bytes())  # algo-1's only
    port = free_port()
    processes = [start(paths, port) for paths in jobs]
    logs = [process.communicate(timeout=600)[0] for process in processes]
    for process, log in zip(processes, logs):
        assert process.returncode == 0, log[-3000:]
        assert "2 epochs completed" in log  # both start from algo-1's checkpoint
    assert maps(logs[0]) == maps(logs[1]) and sorted(maps(logs[0])) == [2]
    records = json.loads((jobs[0].output_data_dir / "metrics.json").read_text())
    assert [r["epoch"] for r in records] == [0, 1, 2]


@pytest.mark.slow
def test_sigterm_stops_both_hosts_at_the_same_step(tmp_path):
    jobs = [host_job(tmp_path, host, {**HYPERPARAMETERS, "epochs": "200", "kv_store": "dist_async"})
            for host in HOSTS]
    port = free_port()
    processes = [start(paths, port) for paths in jobs]
    wait_for_first_epoch(jobs[0], processes)
    for process in processes:
        process.send_signal(signal.SIGTERM)
    logs = [process.communicate(timeout=120)[0] for process in processes]
    assert [p.returncode for p in processes] == [143, 143], [log[-2000:] for log in logs]
    assert "kv_store=dist_async: sagedet trains synchronously" in logs[0]
    assert (jobs[0].model_dir / "model.safetensors").is_file()
    assert (jobs[0].checkpoint_dir / "sagedet-checkpoint.pt").is_file()
    assert not jobs[0].failure_file.exists() and not jobs[1].failure_file.exists()


@pytest.mark.slow
def test_two_hosts_in_pipe_mode_each_take_their_share_of_the_records(tmp_path):
    images = tmp_path / "images"
    write_synthetic_dataset(images, "train", 24, seed=1, image_size=(80, 64))
    write_synthetic_dataset(images, "validation", 10, seed=2, image_size=(80, 64))
    payloads = {name: rec_bytes(images, name) for name in ("train", "validation")}
    channels = {name: {"ContentType": "application/x-recordio", "TrainingInputMode": "Pipe",
                       "S3DistributionType": "FullyReplicated", "RecordWrapperType": "None"}
                for name in ("train", "validation")}
    jobs = []
    for host in HOSTS:
        paths = SageMakerPaths(tmp_path / host)
        write_training_config(paths, {**HYPERPARAMETERS, "epochs": "2"}, channels, hosts=HOSTS, current_host=host)
        paths.data_dir.mkdir(parents=True)
        jobs.append(paths)
    port = free_port()
    with PipeFeeder(jobs[0].data_dir, payloads, passes=2) as first, PipeFeeder(jobs[1].data_dir, payloads, passes=2) as second:
        processes = [start(paths, port) for paths in jobs]
        logs = [process.communicate(timeout=600)[0] for process in processes]
    for process, log in zip(processes, logs):
        assert process.returncode == 0, log[-3000:]
    assert first.opened == second.opened == {"train": 2, "validation": 2}  # each host read its own FIFOs
    assert first.errors == second.errors == []
    assert maps(logs[0]) == maps(logs[1]) and sorted(maps(logs[0])) == [0, 1]
    assert "reads part 2 of 2 of the training data and part 2 of 2 of the validation data, 6 images" in logs[1]
