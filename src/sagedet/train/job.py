"""A SageMaker training job from end to end: what ``docker run IMAGE train`` runs.

config (hyperparameters, channels, resources) → data sources → model (pretrained base, incremental
``model`` channel, or a checkpoint to resume) → :class:`~sagedet.train.loop.Trainer` → the model
folder. Failures go to /opt/ml/output/failure with a non-zero exit (see
:mod:`sagedet.sagemaker.failure`); SIGTERM saves a checkpoint and the best model so far, then exits
with 143.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from .. import __version__
from ..artifacts import find_model_dir, load_model, save_model
from ..data.loaders import Shard, is_stream
from ..data.sources import class_names, open_sources
from ..devices import auto_device_type, parse_device, present_device
from ..errors import ConfigError, DataError, ModelError
from ..model.ssd import SSDDetector, build_ssd
from ..model.weights import load_pretrained_state
from ..sagemaker.channels import Channel, DataChannels, load_channels
from ..sagemaker.failure import clear_failure, run_with_failure_file, write_failure
from ..sagemaker.hyperparameters import TrainingConfig, load_hyperparameters
from ..sagemaker.metrics_log import MetricsLogger
from ..sagemaker.paths import SageMakerPaths
from ..sagemaker.resources import load_resources
from .distributed import EXIT_STOPPED, SOLO, Collective, Rank, launch, plan, worker_failure_file
from .loop import Runtime, StopRequest, Trainer, TrainerOutputs, seed_everything

DATA_WORKERS_ENV = "SAGEDET_DATA_WORKERS"
DEVICE_ENV = "SAGEDET_DEVICE"
SEED = 0
BATCH_NORM_NETWORKS = ("resnet-50", "mobilenet-v3")
SYNC_BATCH_NORM_NETWORKS = ("resnet-50",)  # SyncBatchNorm across the processes on CUDA


def log(message: str) -> None:
    print(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {message}", flush=True)


@dataclass(frozen=True)
class JobEnvironment:
    """sagedet's own environment variables for a training job, read and checked once, at the start."""

    device: torch.device  # SAGEDET_DEVICE
    data_workers: int | None = None  # SAGEDET_DATA_WORKERS; None: :func:`default_data_workers`


def read_job_environment(environ: Mapping[str, str] = os.environ) -> JobEnvironment:
    workers_text = environ.get(DATA_WORKERS_ENV, "").strip()
    workers = None
    if workers_text:
        try:
            workers = int(workers_text)
        except ValueError:
            workers = -1
        if workers < 0:
            raise ConfigError(f"environment variable {DATA_WORKERS_ENV}={environ[DATA_WORKERS_ENV]!r}: expected an "
                              "integer >= 0 (0 loads the data in the training process itself), or unset for the "
                              "default")
    return JobEnvironment(device=_device(environ.get(DEVICE_ENV)), data_workers=workers)


def _runtime(environment: JobEnvironment) -> Runtime:
    device = environment.device
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)  # pinned memory and lazily made CUDA tensors go to the current device
    workers = environment.data_workers
    return Runtime(device=device, data_workers=default_data_workers(device, 1) if workers is None else workers,
                   show_progress=sys.stderr.isatty())


def default_data_workers(device: torch.device, processes: int) -> int:
    """DataLoader workers per training process when SAGEDET_DATA_WORKERS is not set, ``processes`` training
    processes sharing this host's cores: on CUDA all of their share but one, for the process itself (a GPU
    step at hundreds of images/s needs every core decoding and augmenting); on the CPU at most 4, as the
    workers take cores from the training step itself."""
    share = max(1, len(os.sched_getaffinity(0)) // processes)
    return max(1, share - 1) if device.type == "cuda" else min(4, share)


def _device(text: str | None) -> torch.device:
    """The training device: ``SAGEDET_DEVICE`` (cpu, cuda or cuda:N) if set, else (or ``auto``, as the
    server takes it) all of CUDA when present."""
    what = f"environment variable {DEVICE_ENV}={text!r}" if text is not None else f"{DEVICE_ENV} (not set: auto)"
    try:
        value = parse_device(text or "auto")
    except ValueError as error:
        raise ConfigError(f"{what}: {error}") from None
    if value == "auto":
        return torch.device(auto_device_type(what))
    return present_device(value, what)


def _check_batch_size(config: TrainingConfig) -> None:
    if config.base_network in BATCH_NORM_NETWORKS and config.mini_batch_size < 2:
        raise ConfigError(
            f"hyperparameter 'mini_batch_size'={config.mini_batch_size} is too small for base_network="
            f"{config.base_network}: its batch normalization needs at least 2 images per batch; use >= 2")


def _incremental_state(config: TrainingConfig, channels: DataChannels, work_dir: Path) -> dict[str, torch.Tensor] | None:
    """The weights a ``model`` channel brings, checked against this job's network."""
    if channels.model is None:
        return None
    model_dir = find_model_dir(channels.model.path, work_dir)
    state, metadata = load_model(model_dir)
    differences = [
        f"{key} is {metadata.get(key)!r} in the model but {getattr(config, key)!r} in this job's hyperparameters"
        for key in ("base_network", "num_classes") if metadata.get(key) != getattr(config, key)]
    if differences:
        raise ConfigError("incremental training needs the model channel's model to have the same base_network "
                          "and num_classes: " + "; ".join(differences))
    log(f"incremental training: starting from the model in {model_dir}")
    return state


def build_model(config: TrainingConfig, channels: DataChannels, work_dir: Path) -> SSDDetector:
    incremental = _incremental_state(config, channels, work_dir)
    pretrained = None
    if incremental is None and config.use_pretrained_model:
        pretrained = load_pretrained_state(config.base_network)
        log(f"base network {config.base_network}: ImageNet weights loaded")
    model = build_ssd(config.base_network, config.num_classes, config.image_shape, pretrained)
    if incremental is not None:
        try:
            model.load_state_dict(incremental)
        except RuntimeError as exc:
            raise ModelError(f"the model channel's weights do not fit base_network={config.base_network}, "
                             f"num_classes={config.num_classes}: {exc}") from exc
    frozen = model.freeze(config.freeze_layer_pattern)
    if frozen:
        log(f"freeze_layer_pattern froze {len(frozen)} layers: {', '.join(frozen)}")
    return model


def model_metadata(config: TrainingConfig, names: list[str], result_epoch: int, result_map: float,
                   epochs_completed: int) -> dict:
    return {
        "sagedet_version": __version__,
        "base_network": config.base_network,
        "num_classes": config.num_classes,
        "image_shape": config.image_shape,
        "nms_threshold": config.nms_threshold,
        "class_names": names,
        "best_epoch": result_epoch,
        "validation_mAP": result_map,
        "epochs_completed": epochs_completed,
        "hyperparameters": config.to_dict(),
    }


def _shard(channel: Channel, rank: Rank) -> Shard:
    """Which part of a channel this process reads: FullyReplicated channels arrive whole on every
    host (a part of all processes); ShardedByS3Key channels arrive in parts (a part of this host's)."""
    if channel.distribution == "ShardedByS3Key":
        return Shard(rank.local_rank, rank.local_world_size)
    return Shard(rank.rank, rank.world_size)


def _distributed_runtime(runtime: Runtime, config: TrainingConfig, channels: DataChannels, resources,
                         rank: Rank, data_workers: int | None = None) -> Runtime:
    """``runtime`` for process ``rank`` of several: its GPU, its share of the batch, of the data and of the
    host's cores (``data_workers`` if set, else :func:`default_data_workers`)."""
    if rank.world_size == 1:
        return runtime
    if channels.train.input_mode == "Pipe" and rank.local_world_size > 1:
        raise ConfigError(f"Pipe mode with {rank.local_world_size} training processes on one host is not supported: "
                          "a FIFO has one reader; use File or FastFile mode, or one GPU per host")
    per_process = config.mini_batch_size // rank.local_world_size
    if per_process < 1:
        raise ConfigError(f"hyperparameter 'mini_batch_size'={config.mini_batch_size} is smaller than the "
                          f"{rank.local_world_size} GPUs of a host; it is shared out between them: use >= "
                          f"{rank.local_world_size}")
    synchronized = runtime.device.type == "cuda" and config.base_network in SYNC_BATCH_NORM_NETWORKS
    if per_process < 2 and config.base_network in BATCH_NORM_NETWORKS and not synchronized:
        raise ConfigError(f"hyperparameter 'mini_batch_size'={config.mini_batch_size} gives each of the "
                          f"{rank.local_world_size} GPUs of a host 1 image a step, too few for base_network="
                          f"{config.base_network}: its batch normalization needs at least 2 images per GPU; use >= "
                          f"{2 * rank.local_world_size}")
    if config.mini_batch_size % rank.local_world_size and rank.local_rank == 0:
        log(f"mini_batch_size={config.mini_batch_size} is shared out between {rank.local_world_size} GPUs as "
            f"{per_process} image(s) each: {per_process * rank.local_world_size} a step on this host")
    if len(resources.hosts) > 1 and config.kv_store == "dist_async":
        log("kv_store=dist_async: sagedet trains synchronously (DistributedDataParallel), as with dist_sync")
    device = runtime.device
    if device.type == "cuda":
        if device.index is None:  # one process per GPU; SAGEDET_DEVICE=cuda:N starts one process, on GPU N
            device = torch.device("cuda", rank.local_rank)
        torch.cuda.set_device(device)
    workers = default_data_workers(device, rank.local_world_size) if data_workers is None else data_workers
    return replace(runtime, device=device, data_workers=workers, rank=rank, batch_size=per_process,
                   train_shard=_shard(channels.train, rank), validation_shard=_shard(channels.validation, rank),
                   show_progress=runtime.show_progress and rank.is_main)


def run_training(paths: SageMakerPaths, stop: StopRequest, rank: Rank = SOLO) -> int:
    config = load_hyperparameters(paths.hyperparameters_file)
    channels = load_channels(paths)
    resources = load_resources(paths)
    _check_batch_size(config)
    environment = read_job_environment()
    runtime = _distributed_runtime(_runtime(environment), config, channels, resources, rank, environment.data_workers)
    speaks = rank.local_rank == 0  # one process per host writes the log and the metric lines
    say = log if speaks else (lambda message: None)
    say(f"sagedet {__version__}: {config.base_network} at {config.image_shape}x{config.image_shape}, "
        f"{config.num_classes} classes, {config.epochs} epochs, on {runtime.device}, host {resources.current_host}"
        + (f", process {rank.rank} of {rank.world_size}" if rank.world_size > 1 else ""))

    if rank.world_size > 1:
        say(f"data: this process reads part {runtime.train_shard.index + 1} of {runtime.train_shard.count} of the "
            f"training data and part {runtime.validation_shard.index + 1} of {runtime.validation_shard.count} of the "
            f"validation data, {runtime.batch_size} images a step")
    train_source, validation_source = open_sources(channels, config.num_classes, config.label_width)
    if is_stream(train_source):
        say(f"data: {channels.format} streamed in Pipe mode from {channels.train.path}_<epoch> and "
            f"{channels.validation.path}_<epoch>")
    else:
        say(f"data: {len(train_source)} training and {len(validation_source)} validation images ({channels.format})")
        if len(train_source) < 2 and config.base_network in BATCH_NORM_NETWORKS:
            raise DataError(f"the train channel ({channels.train.path}) holds {len(train_source)} image(s), too few "
                            f"for base_network={config.base_network}: its batch normalization needs at least 2 "
                            "images a step")
        if config.num_training_samples != len(train_source):
            say(f"note: num_training_samples={config.num_training_samples} but the train channel holds "
                f"{len(train_source)} images; the data's count is used")

    seed_everything(SEED)
    with tempfile.TemporaryDirectory(prefix="sagedet-model-channel-") as work_dir:
        model = build_model(config, channels, Path(work_dir))
    if rank.world_size > 1 and config.base_network in SYNC_BATCH_NORM_NETWORKS:
        if runtime.cuda:
            model.synchronize_batch_norm()
            say("resnet-50: batch normalization synchronized across the training processes (SyncBatchNorm)")
        else:
            say("resnet-50 on CPU: batch normalization stays per process (PyTorch's SyncBatchNorm needs CUDA)")
    collective = Collective.join(rank, runtime.device)
    try:
        trainer = Trainer(
            config, model, train_source, validation_source,
            TrainerOutputs(paths.checkpoint_dir, paths.output_data_dir), runtime,
            MetricsLogger(resources.current_host, None if speaks else io.StringIO()), stop, say, collective)
        trainer.resume()
        result = trainer.fit()
        if rank.is_main:
            names = class_names(config.num_classes, train_source, validation_source)  # a stream's, after a pass
            save_model(paths.model_dir, result.best_state,
                       model_metadata(config, names, result.best_epoch, result.best_map, result.epochs_completed))
            log(f"model written to {paths.model_dir} (best epoch {result.best_epoch}, validation mAP "
                f"{result.best_map:.4f})")
            if len(result.history.records):
                log(f"training curves: {paths.output_data_dir / 'training_curves.png'}")
        collective.barrier()  # no host ends before the model is written (SDK local mode ends the job then)
    finally:
        collective.leave()
    return EXIT_STOPPED if result.stopped else 0


def _local_processes() -> int:
    """One training process per GPU when training on all of CUDA (``cuda`` or ``auto``), else one."""
    device = _device(os.environ.get(DEVICE_ENV))
    if device.type == "cpu" or device.index is not None:
        return 1
    return torch.cuda.device_count()


def main() -> int:
    """The ``train`` entrypoint: one training process, or the launcher of several."""
    paths = SageMakerPaths.from_env()
    stop = StopRequest().install()
    rank = Rank.from_env()
    if rank is not None:  # a training process started by the launcher below
        return run_with_failure_file(paths, lambda: run_training(paths, stop, rank), worker_failure_file())

    def job() -> int:
        clear_failure(paths)
        topology = plan(load_resources(paths), _local_processes())
        if not topology.distributed:
            return run_training(paths, stop)
        load_hyperparameters(paths.hyperparameters_file)  # report bad input once, before starting processes
        load_channels(paths)
        result = launch(topology, [sys.executable, "-m", "sagedet.train.job"], log)
        if result.reason:
            print(result.reason, file=sys.stderr, flush=True)
            write_failure(paths, result.reason)
        return result.code

    return run_with_failure_file(paths, job)


if __name__ == "__main__":
    sys.exit(main())
