"""The real ``container/train`` entrypoint end to end: outputs, metric lines, resume, incremental, SIGTERM."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time

import pytest
import torch
from PIL import Image

from conftest import TRAIN_ENTRYPOINT, make_job, run_train, set_hyperparameters, train_env
from sagedet.artifacts import load_model
from sagedet.data.synthetic import SYNTHETIC_CLASSES
from sagedet.sagemaker.metrics_log import METRIC_DEFINITIONS
from sagedet.sagemaker.paths import SageMakerPaths
from sagedet.train.loop import CHECKPOINT_NAME

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A two-epoch job, run once for the module."""
    paths = make_job(tmp_path_factory.mktemp("trained") / "opt_ml")
    set_hyperparameters(paths, epochs="2")
    result = run_train(paths)
    assert result.returncode == 0, result.stdout + result.stderr
    return paths, result


def test_model_folder_holds_everything_serving_needs(trained):
    paths, _ = trained
    state, metadata = load_model(paths.model_dir)
    assert metadata["base_network"] == "mobilenet-v3" and metadata["num_classes"] == 3
    assert metadata["image_shape"] == 64
    assert metadata["class_names"] == list(SYNTHETIC_CLASSES)
    assert metadata["hyperparameters"]["mini_batch_size"] == 8
    assert metadata["epochs_completed"] == 2 and metadata["best_epoch"] in (0, 1)
    assert all(isinstance(t, torch.Tensor) for t in state.values()) and len(state) > 100
    assert not paths.failure_file.exists()


def test_metrics_files_and_plot(trained):
    paths, _ = trained
    records = json.loads((paths.output_data_dir / "metrics.json").read_text())
    assert [r["epoch"] for r in records] == [0, 1]
    assert all(0.0 <= r["validation_map"] <= 1.0 and r["train_loss"] > 0 for r in records)
    csv_lines = (paths.output_data_dir / "metrics.csv").read_text().strip().splitlines()
    assert csv_lines[0].startswith("epoch,") and len(csv_lines) == 3
    with Image.open(paths.output_data_dir / "training_curves.png") as plot:
        assert plot.format == "PNG" and plot.width > 300
    assert (paths.checkpoint_dir / CHECKPOINT_NAME).is_file()


def test_metric_lines_match_the_builtins_metric_definitions(trained):
    paths, result = trained
    for definition in METRIC_DEFINITIONS:
        values = [float(m.group(1)) for m in re.finditer(definition["Regex"], result.stdout)]
        assert values, f"no line for {definition['Name']}"
    maps = [float(m.group(1)) for m in re.finditer(METRIC_DEFINITIONS[2]["Regex"], result.stdout)]
    records = json.loads((paths.output_data_dir / "metrics.json").read_text())
    assert maps == pytest.approx([r["validation_map"] for r in records], rel=1e-5)
    assert re.search(r"#progress_metric: host=algo-1, completed 100 %", result.stdout)


def _copy_job(paths: SageMakerPaths, target) -> SageMakerPaths:
    shutil.copytree(paths.root, target)
    return SageMakerPaths(target)


def test_resume_from_checkpoint_trains_only_the_remaining_epochs(trained, tmp_path):
    paths = _copy_job(trained[0], tmp_path / "opt_ml")
    set_hyperparameters(paths, epochs="3")
    result = run_train(paths)
    assert result.returncode == 0, result.stderr
    assert "resumed from checkpoint" in result.stdout and "2 epochs completed" in result.stdout
    assert re.findall(r"epoch=(\d+), validation mAP", result.stdout) == ["2"]
    records = json.loads((paths.output_data_dir / "metrics.json").read_text())
    assert [r["epoch"] for r in records] == [0, 1, 2]


def test_checkpoint_of_another_network_is_refused(trained, tmp_path):
    paths = _copy_job(trained[0], tmp_path / "opt_ml")
    set_hyperparameters(paths, num_classes="4")
    result = run_train(paths)
    assert result.returncode == 1
    reason = paths.failure_file.read_text()
    assert CHECKPOINT_NAME in reason and "num_classes is 3 in the checkpoint but 4 in this job" in reason


def test_checkpoint_of_another_optimization_is_refused(trained, tmp_path):
    """The checkpoint's optimizer and scheduler state would override a changed learning rate silently, and
    another optimizer's state does not load: both are refused, naming each key."""
    paths = _copy_job(trained[0], tmp_path / "opt_ml")
    saved = json.loads(paths.hyperparameters_file.read_text())
    set_hyperparameters(paths, epochs="3", learning_rate="0.0001",
                        optimizer="sgd" if saved.get("optimizer", "sgd") != "sgd" else "adam")
    result = run_train(paths)
    assert result.returncode == 1, result.stdout + result.stderr
    reason = paths.failure_file.read_text()
    assert CHECKPOINT_NAME in reason and "learning_rate is " in reason and "but 0.0001 in this job" in reason
    assert "optimizer is " in reason and "Traceback" not in reason


def test_an_older_checkpoint_of_another_optimizer_is_refused_by_name(trained, tmp_path):
    """A checkpoint written before the optimization's hyperparameters were recorded in it: its optimizer
    state does not load into another optimizer, and the job says so instead of failing with a KeyError."""
    from sagedet.train.checkpoint import load_checkpoint, save_checkpoint

    paths = _copy_job(trained[0], tmp_path / "opt_ml")
    checkpoint = paths.checkpoint_dir / CHECKPOINT_NAME
    state = load_checkpoint(checkpoint)
    state["identity"] = {key: state["identity"][key] for key in ("base_network", "num_classes", "image_shape")}
    save_checkpoint(checkpoint, state)
    saved = json.loads(paths.hyperparameters_file.read_text())
    other = "sgd" if saved.get("optimizer", "sgd") != "sgd" else "adam"
    set_hyperparameters(paths, epochs="3", optimizer=other)
    result = run_train(paths)
    assert result.returncode == 1, result.stdout + result.stderr
    reason = paths.failure_file.read_text()
    assert f"holds the state of optimizer='{'sgd' if other == 'adam' else 'adam'}', but this job's optimizer is " \
           f"'{other}'" in reason
    assert "Traceback" not in reason


def test_incremental_training_from_model_tar_gz(trained, tmp_path):
    source = trained[0]
    paths = make_job(tmp_path / "opt_ml")
    archive = paths.channel_dir("model") / "model.tar.gz"
    archive.parent.mkdir(parents=True)
    with tarfile.open(archive, "w:gz") as tar:  # as SageMaker packs /opt/ml/model
        for file in source.model_dir.iterdir():
            tar.add(file, arcname=file.name)
    config = json.loads(paths.input_data_config_file.read_text())
    config["model"] = {"ContentType": "application/x-sagemaker-model", "TrainingInputMode": "File"}
    paths.input_data_config_file.write_text(json.dumps(config))
    set_hyperparameters(paths, learning_rate="1e-9")  # the seed weights must come through unchanged
    result = run_train(paths)
    assert result.returncode == 0, result.stderr
    assert "incremental training: starting from the model" in result.stdout
    seed_state, _ = load_model(source.model_dir)
    new_state, _ = load_model(paths.model_dir)
    convolutions = [k for k in seed_state if k.startswith("head.") and k.endswith(".weight") and seed_state[k].dim() == 4]
    assert convolutions
    for key in convolutions:
        assert torch.allclose(new_state[key], seed_state[key], atol=1e-5), key


def test_sigterm_writes_a_checkpoint_and_the_model_then_exits(tmp_path):
    paths = make_job(tmp_path / "opt_ml", train=64)
    set_hyperparameters(paths, epochs="200", num_training_samples="64")
    log_path = tmp_path / "train.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, str(TRAIN_ENTRYPOINT)], env=train_env(paths),
                                   stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 240
        while "epoch=1, validation mAP" not in log_path.read_text():
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        time.sleep(1.0)  # into the next epoch
        process.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        code = process.wait(timeout=120)
        elapsed = time.monotonic() - sent
    output = log_path.read_text()
    assert code == 143, output
    assert elapsed < 60, f"took {elapsed:.1f} s to stop"
    assert "SIGTERM received" in output and "checkpoint written" in output
    assert not paths.failure_file.exists()
    _, metadata = load_model(paths.model_dir)
    assert metadata["epochs_completed"] >= 2
    # A new job on the same checkpoint location carries on from there.
    set_hyperparameters(paths, epochs=str(metadata["epochs_completed"] + 1))
    result = run_train(paths)
    assert result.returncode == 0, result.stderr
    assert f"{metadata['epochs_completed']} epochs completed" in result.stdout


def test_a_terminal_shows_a_progress_bar(tmp_path):
    import fcntl
    import os
    import pty
    import struct
    import termios

    paths = make_job(tmp_path / "opt_ml", train=16, validation=4)
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))  # 100 columns, as a terminal has
    process = subprocess.Popen([sys.executable, str(TRAIN_ENTRYPOINT)], env=train_env(paths),
                               stdin=terminal, stdout=terminal, stderr=terminal)
    os.close(terminal)
    output = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the terminal closes when the process exits
            break
        if not chunk:
            break
        output += chunk
    assert process.wait(timeout=120) == 0
    os.close(controller)
    text = output.decode(errors="replace")
    assert re.search(r"epoch 0: +\d+%\|", text), text[-2000:]  # tqdm's bar on the terminal
    assert "#quality_metric" in text


def test_no_progress_bar_when_not_on_a_terminal(trained):
    _, result = trained
    assert "%|" not in result.stdout + result.stderr


def _can_mount_a_small_shm() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64m tmpfs /dev/shm"],
                           capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount_a_small_shm(), reason="needs unshare and mount (root) for a 64 MB /dev/shm")
def test_a_job_fits_its_data_workers_to_dockers_default_shared_memory(tmp_path):
    """Docker's default /dev/shm (64 MB): with float32 batches of 32 images at 300 px (33 MB) two workers
    failed to allocate and the job stalled until killed. Batches now cross as uint8 (8 MB), and the job
    loads its data with as many workers as fit, 2 of the 4 asked for here, and says so."""
    paths = make_job(tmp_path / "opt_ml", train=64, validation=32)
    set_hyperparameters(paths, image_shape="300", mini_batch_size="32", num_training_samples="64")
    script = f"mount -t tmpfs -o size=64m tmpfs /dev/shm && exec {sys.executable} {TRAIN_ENTRYPOINT}"
    result = subprocess.run(["unshare", "-m", "sh", "-c", script], env=train_env(paths, SAGEDET_DATA_WORKERS="4"),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert ("data loading: 2 DataLoader worker(s) per training process instead of 4: /dev/shm has 64 MB free, "
            "and each worker keeps 2 batches of 8 MB there (32 images of 300x300)") in result.stdout
    assert (paths.model_dir / "model.safetensors").is_file()


def test_default_data_workers_leave_a_core_per_process_on_cuda_and_take_at_most_4_on_the_cpu(monkeypatch):
    from sagedet.train import job

    monkeypatch.setattr(job.os, "sched_getaffinity", lambda pid: set(range(16)))
    assert job.default_data_workers(torch.device("cuda", 0), 1) == 15
    assert job.default_data_workers(torch.device("cuda", 0), 8) == 1
    assert job.default_data_workers(torch.device("cuda", 0), 4) == 3
    assert job.default_data_workers(torch.device("cpu"), 1) == 4
    assert job.default_data_workers(torch.device("cpu"), 8) == 2
    monkeypatch.setattr(job.os, "sched_getaffinity", lambda pid: {0, 1})
    assert job.default_data_workers(torch.device("cuda", 0), 1) == 1
    assert job.default_data_workers(torch.device("cpu"), 1) == 2
    assert job.default_data_workers(torch.device("cuda", 0), 4) == 1
