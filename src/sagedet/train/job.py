"""A SageMaker training job from end to end: what ``docker run IMAGE train`` runs.

config (hyperparameters, channels, resources) → data sources → model (pretrained base, incremental
``model`` channel, or a checkpoint to resume) → :class:`~sagedet.train.loop.Trainer` → the model
folder. Failures go to /opt/ml/output/failure with a non-zero exit (see
:mod:`sagedet.sagemaker.failure`); SIGTERM saves a checkpoint and the best model so far, then exits
with 143.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from .. import __version__
from ..artifacts import find_model_dir, load_model, save_model
from ..data.loaders import is_stream
from ..data.sources import class_names, open_sources
from ..errors import ConfigError, ModelError
from ..model.ssd import SSDDetector, build_ssd
from ..model.weights import load_pretrained_state
from ..sagemaker.channels import DataChannels, load_channels
from ..sagemaker.failure import clear_failure, run_with_failure_file
from ..sagemaker.hyperparameters import TrainingConfig, load_hyperparameters
from ..sagemaker.metrics_log import MetricsLogger
from ..sagemaker.paths import SageMakerPaths
from ..sagemaker.resources import load_resources
from .loop import Runtime, StopRequest, Trainer, TrainerOutputs, seed_everything

EXIT_STOPPED = 143  # 128 + SIGTERM
DATA_WORKERS_ENV = "SAGEDET_DATA_WORKERS"
DEVICE_ENV = "SAGEDET_DEVICE"
SEED = 0
BATCH_NORM_NETWORKS = ("resnet-50", "mobilenet-v3")


def log(message: str) -> None:
    print(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {message}", flush=True)


def _runtime() -> Runtime:
    device = torch.device(os.environ.get(DEVICE_ENV) or ("cuda" if torch.cuda.is_available() else "cpu"))
    workers_text = os.environ.get(DATA_WORKERS_ENV)
    try:
        workers = int(workers_text) if workers_text else min(4, os.cpu_count() or 1)
    except ValueError:
        raise ConfigError(f"environment variable {DATA_WORKERS_ENV}={workers_text!r}: expected an integer >= 0") from None
    return Runtime(device=device, data_workers=max(0, workers), show_progress=sys.stderr.isatty())


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


def run_training(paths: SageMakerPaths, stop: StopRequest) -> int:
    config = load_hyperparameters(paths.hyperparameters_file)
    channels = load_channels(paths)
    resources = load_resources(paths)
    _check_batch_size(config)
    runtime = _runtime()
    log(f"sagedet {__version__}: {config.base_network} at {config.image_shape}x{config.image_shape}, "
        f"{config.num_classes} classes, {config.epochs} epochs, on {runtime.device}, host {resources.current_host}")

    train_source, validation_source = open_sources(channels, config.num_classes, config.label_width)
    names = class_names(config.num_classes, train_source, validation_source)
    if is_stream(train_source):
        log(f"data: {channels.format} streamed in Pipe mode from {channels.train.path}_<epoch> and "
            f"{channels.validation.path}_<epoch>")
    else:
        log(f"data: {len(train_source)} training and {len(validation_source)} validation images ({channels.format})")
        if config.num_training_samples != len(train_source):
            log(f"note: num_training_samples={config.num_training_samples} but the train channel holds "
                f"{len(train_source)} images; the data's count is used")

    seed_everything(SEED)
    with tempfile.TemporaryDirectory(prefix="sagedet-model-channel-") as work_dir:
        model = build_model(config, channels, Path(work_dir))
    trainer = Trainer(
        config, model, train_source, validation_source,
        TrainerOutputs(paths.checkpoint_dir, paths.output_data_dir), runtime,
        MetricsLogger(resources.current_host), stop, log)
    trainer.resume()
    result = trainer.fit()

    save_model(paths.model_dir, result.best_state,
               model_metadata(config, names, result.best_epoch, result.best_map, result.epochs_completed))
    log(f"model written to {paths.model_dir} (best epoch {result.best_epoch}, validation mAP {result.best_map:.4f})")
    if len(result.history.records):
        log(f"training curves: {paths.output_data_dir / 'training_curves.png'}")
    return EXIT_STOPPED if result.stopped else 0


def main() -> int:
    """The ``train`` entrypoint."""
    paths = SageMakerPaths.from_env()
    stop = StopRequest().install()

    def job() -> int:
        clear_failure(paths)
        return run_training(paths, stop)

    return run_with_failure_file(paths, job)
