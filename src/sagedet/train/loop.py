"""The training loop: epochs of SSD training, validation mAP, metric lines, checkpoints, stop on SIGTERM.

The loop knows nothing of /opt/ml: it receives the typed config, the model, the two data sets, a
:class:`TrainerOutputs` with the folders to write to, and a :class:`StopRequest` that SIGTERM sets.
It checks the stop request after every batch, so a stopped job writes its checkpoint and exits
within one training step (well inside SageMaker's 120 s before SIGKILL).

With several processes (:mod:`sagedet.train.distributed`) the model is wrapped in
DistributedDataParallel; each process reads its shard; before each step the processes agree (one
small all-reduce) that all of them have a batch and whether one was asked to stop, so that they take
the same steps; validation detections are gathered, the mAP is computed once and shared; only
process 0 writes checkpoints and metrics files, and resuming reads its checkpoint and shares it.
"""

from __future__ import annotations

import itertools
import math
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from ..allocator import tune_malloc
from ..data.batch_photometric import BatchPhotometricDistortion
from ..data.dataset import Batch, check_batch
from ..data.loaders import (PREFETCH_FACTOR, WHOLE, Shard, TrainingData, build_loader, shared_memory_free,
                            workers_that_fit)
from ..data.transforms import eval_transform, scale_pixels, train_transform
from ..errors import DataError, ModelError, SagedetError
from ..evaluate.coco import coco_metrics
from ..evaluate.detections import ImageDetections
from ..evaluate.voc_map import voc_map
from ..model import winograd_tuning
from ..model.precision import NAMES, amp_dtype
from ..model.ssd import SSDDetector
from ..model.winograd import LARGE_MAP_CELLS, MIN_MAP_CELLS, eligible, use_winograd
from ..sagemaker.hyperparameters import TrainingConfig
from ..sagemaker.metrics_log import MetricsLogger
from .checkpoint import load_checkpoint, save_checkpoint
from .distributed import SOLO, Collective, Rank
from .early_stopping import EarlyStopping
from .history import EpochRecord, TrainingHistory
from .optim import build_optimizer, build_scheduler, implementation, load_optimizer_state, saved_optimizer_name

CHECKPOINT_NAME = "sagedet-checkpoint.pt"
CHECKPOINT_FORMAT = 1
# The hyperparameters a checkpoint must share with the job that resumes it: the network's, then the
# optimization's (the optimizer's and scheduler's saved state would otherwise override this job's values,
# or fail to load). epochs, mini_batch_size and the evaluation and early-stopping settings may change.
IDENTITY_KEYS = ("base_network", "num_classes", "image_shape", "optimizer", "learning_rate", "momentum",
                 "weight_decay", "lr_scheduler_step", "lr_scheduler_factor", "freeze_layer_pattern")
DISTORTION_SEED = 7919


class StopRequest:
    """Set by SIGTERM (SageMaker's StopTrainingJob, a spot interruption); polled by the loop."""

    def __init__(self) -> None:
        self.requested = False

    def install(self) -> "StopRequest":
        signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame) -> None:  # noqa: ANN001 - signal handler signature
        print("SIGTERM received: finishing the current step, then saving a checkpoint", file=sys.stderr, flush=True)
        self.requested = True


def model_batch(batch: Batch, device: torch.device, distortion: Callable[[Tensor, Tensor], Tensor] | None = None,
                channels_last: bool = False) -> Batch:
    """A loader's batch (uint8 images) as the model takes it: checked, on ``device``, pixels scaled to [0, 1],
    then the photometric distortion (training batches), channels-last where the model is."""
    batch = check_batch(batch).to(device, non_blocking=True)
    batch.images = scale_pixels(batch.images)
    if distortion is not None:
        batch.images = distortion(batch.images, batch.regions)
    if channels_last:
        batch.images = batch.images.contiguous(memory_format=torch.channels_last)
    return batch


@dataclass
class Runtime:
    """Where and how the loop runs."""

    device: torch.device
    data_workers: int = 2
    log_every: int = 50  # batches between metric lines within an epoch
    show_progress: bool = False
    rank: Rank = SOLO
    batch_size: int | None = None  # per process; None: mini_batch_size
    train_shard: Shard = WHOLE
    validation_shard: Shard = WHOLE

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def amp_dtype(self) -> torch.dtype | None:
        return amp_dtype(self.device)


@dataclass
class TrainerOutputs:
    checkpoint_dir: Path
    output_data_dir: Path

    @property
    def checkpoint_file(self) -> Path:
        return self.checkpoint_dir / CHECKPOINT_NAME


@dataclass
class TrainResult:
    best_state: dict[str, torch.Tensor]
    best_epoch: int
    best_map: float
    epochs_completed: int
    stopped: bool  # by SIGTERM
    history: TrainingHistory = field(default_factory=TrainingHistory)


def gpu_training_line(name: str, device: torch.device, dtype: torch.dtype | None, scaled: bool,
                      optimizer: torch.optim.Optimizer, workers: int) -> str:
    """The log's account of how a GPU trains: its autocast, memory format, optimizer and data feed."""
    scaler = " with a gradient scaler" if scaled else ""
    return (f"GPU training on {device} ({name}): {NAMES[dtype]} autocast{scaler}, channels-last, "
            f"{type(optimizer).__name__} ({implementation(optimizer)}), {workers} DataLoader worker(s) "
            f"filling pinned memory")


def identity(config: TrainingConfig) -> dict:
    return {key: getattr(config, key) for key in IDENTITY_KEYS}


def identity_differences(saved: object, config: TrainingConfig) -> list[str]:
    """How a checkpoint's hyperparameters differ from this job's (checkpoints written before the
    optimization's keys were added are compared on the keys they hold)."""
    if not isinstance(saved, dict):
        return [f"the checkpoint names no hyperparameters ({saved!r})"]
    ours = identity(config)
    return [f"{key} is {saved[key]!r} in the checkpoint but {ours[key]!r} in this job"
            for key in IDENTITY_KEYS if key in saved and _comparable(saved[key]) != _comparable(ours[key])]


def _comparable(value: object) -> object:
    return tuple(value) if isinstance(value, list) else value


def _cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


class Trainer:
    def __init__(self, config: TrainingConfig, model: SSDDetector, train_data: TrainingData,
                 validation_data: TrainingData, outputs: TrainerOutputs, runtime: Runtime,
                 metrics: MetricsLogger, stop: StopRequest, log: Callable[[str], None] = print,
                 collective: Collective | None = None):
        self.config = config
        self.runtime = runtime
        self.outputs = outputs
        self.metrics = metrics
        self.stop = stop
        self.log = log
        self.collective = collective or Collective(SOLO, runtime.device)
        self.is_main = runtime.rank.is_main
        self.model = model.to(runtime.device)
        self.channels_last = runtime.cuda or model.cpu_channels_last
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        winograd_layers, wide = [], 0
        if not runtime.cuda:
            wide = sum(eligible(module) for module in self.model.modules())
            winograd_layers = use_winograd(self.model, training=True)
            malloc = tune_malloc()  # before the data loader's workers fork, so they inherit it
            if self.is_main:
                log(f"CPU training: {malloc}")
        if winograd_layers and self.is_main:
            log(f"CPU training: {len(winograd_layers)} 3x3 convolutions computed by Winograd F(4x4, 3x3) "
                f"on maps of {MIN_MAP_CELLS} cells or more, F(6x6, 3x3) on maps of {LARGE_MAP_CELLS} or more "
                f"(same parameters and results to float32 rounding; fewer multiplications); "
                f"{len(winograd_layers) - wide} of them, narrower, in training steps only; validation runs those, "
                f"and the others on maps where Winograd pays only with a backward pass, with torch's convolution")
        batch = runtime.batch_size or config.mini_batch_size
        if winograd_layers:
            self._keep_faster_winograd_layers(config.image_shape, batch)
        self.network: torch.nn.Module = self.model  # what the training step calls: the model, or DDP around it
        if self.collective.active:
            self.network = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[runtime.device.index] if runtime.cuda else None)
        self.optimizer = build_optimizer(config, self.model.parameters(), runtime.cuda)
        self.scheduler = build_scheduler(config, self.optimizer)
        self.scaler = torch.amp.GradScaler("cuda", enabled=runtime.amp_dtype == torch.float16)
        self.early_stopping = EarlyStopping(config.early_stopping, config.early_stopping_min_epochs,
                                            config.early_stopping_patience, config.early_stopping_tolerance)
        self.history = TrainingHistory()
        self.best_state: dict[str, torch.Tensor] | None = None
        self.epochs_completed = 0
        self.stopping = False  # the stop request as every process agreed on it
        options = dict(workers=self._data_workers(batch), pin_memory=runtime.cuda)
        # SSD's photometric distortion, on each training batch on the device (after the workers' geometric
        # augmentation); its own generator, seeded by rank, so that processes draw independent distortions
        generator = torch.Generator(runtime.device).manual_seed(DISTORTION_SEED + runtime.rank.rank)
        self.distortion = BatchPhotometricDistortion(generator=generator)
        if runtime.cuda and self.is_main:
            log(gpu_training_line(torch.cuda.get_device_name(runtime.device), runtime.device, runtime.amp_dtype,
                                  self.scaler.is_enabled(), self.optimizer, options["workers"]))
        self.train_loader = build_loader(train_data, train_transform(config.image_shape), batch, training=True,
                                         shard=runtime.train_shard, **options)
        self.validation_loader = build_loader(validation_data, eval_transform(config.image_shape), batch,
                                              training=False, shard=runtime.validation_shard, **options)

    def _data_workers(self, batch: int) -> int:
        """The runtime's DataLoader workers, fewer if their batches would not fit in /dev/shm."""
        wanted = self.runtime.data_workers
        batch_bytes = batch * 3 * self.config.image_shape ** 2  # uint8 images, the bulk of a batch
        free = shared_memory_free()
        workers = workers_that_fit(wanted, batch_bytes, free, self.runtime.rank.local_world_size)
        if workers < wanted and self.is_main:
            self.log(f"data loading: {workers} DataLoader worker(s) per training process instead of {wanted}: "
                     f"/dev/shm has {free / 2**20:.0f} MB free, and each worker keeps {PREFETCH_FACTOR} batches of "
                     f"{batch_bytes / 2**20:.0f} MB there ({batch} images of {self.config.image_shape}x"
                     f"{self.config.image_shape}); give the container more shared memory to load data in parallel "
                     f"(docker run --shm-size=2g)")
        return workers

    def _keep_faster_winograd_layers(self, image_shape: int, batch: int) -> None:
        """Time each Winograd layer against torch's convolution on this machine (process 0; the others
        take its choice) and give the slower ones back to torch's convolution."""
        slower = None
        if self.is_main:
            slower, line = winograd_tuning.choose(self.model, image_shape, batch, self.channels_last,
                                                  stop=lambda: self.stop.requested)
            self.log("CPU training: " + line)
        slower = self.collective.broadcast(slower)
        if not self.is_main:
            self.log(f"CPU training: {len(slower)} Winograd layer(s) given back to torch's convolution, "
                     f"as process 0 timed them")
        winograd_tuning.use_torch_convolution(self.model, slower)

    # --- checkpoints --------------------------------------------------------------------------
    def resume(self) -> bool:
        """Load the checkpoint in the checkpoint folder, if there is one; True if it did. With several
        processes, process 0's checkpoint is shared with the others."""
        state = load_checkpoint(self.outputs.checkpoint_file) if self.is_main else None
        state = self.collective.broadcast(state)
        if state is None:
            return False
        differences = identity_differences(state.get("identity"), self.config)
        if differences:
            raise ModelError(
                f"checkpoint {self.outputs.checkpoint_file} was written by a job with other hyperparameters: "
                + "; ".join(differences) + ". A job resumes a checkpoint with the same values (epochs, "
                "mini_batch_size and the evaluation and early-stopping settings may change), or starts afresh "
                "with an empty checkpoint location")
        self.model.load_state_dict(state["model"])
        saved_optimizer = saved_optimizer_name(state["optimizer"])
        if saved_optimizer != self.config.optimizer:  # an older checkpoint, whose identity lacks the optimizer
            raise ModelError(f"checkpoint {self.outputs.checkpoint_file} holds the state of optimizer="
                             f"{saved_optimizer!r}, but this job's optimizer is {self.config.optimizer!r}; use the "
                             "job's own optimizer, or an empty checkpoint location")
        try:
            load_optimizer_state(self.optimizer, state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
        except (KeyError, ValueError) as error:  # e.g. an older checkpoint of another freeze_layer_pattern
            raise ModelError(f"checkpoint {self.outputs.checkpoint_file}: its optimizer state does not fit this "
                             f"job's parameters (freeze_layer_pattern={self.config.freeze_layer_pattern!r}): "
                             f"{error}; use the values of the job that wrote it, or an empty checkpoint "
                             "location") from None
        if "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        self.early_stopping.load_state_dict(state["early_stopping"])
        self.history = TrainingHistory.from_list(state["history"])
        self.best_state = state["best_model"]
        self.epochs_completed = int(state["epochs_completed"])
        self.log(f"resumed from checkpoint {self.outputs.checkpoint_file}: {self.epochs_completed} epochs completed")
        return True

    def _save_checkpoint(self) -> None:
        if not self.is_main:
            return
        state = {
            "format": CHECKPOINT_FORMAT,
            "identity": identity(self.config),
            "model": _cpu_state(self.model),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "early_stopping": self.early_stopping.state_dict(),
            "history": self.history.to_list(),
            "best_model": self.best_state,
            "epochs_completed": self.epochs_completed,
        }
        if self.scaler.is_enabled():
            state["scaler"] = self.scaler.state_dict()
        save_checkpoint(self.outputs.checkpoint_file, state)

    # --- the loop -------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        config = self.config
        while self.epochs_completed < config.epochs and not self.stopping:
            epoch = self.epochs_completed
            record = self._train_epoch(epoch)
            if record is None:  # stopped mid-epoch
                break
            self.epochs_completed += 1
            validation = self.evaluate(epoch)
            if validation is None:
                self.epochs_completed -= 1  # validation was cut short: redo this epoch on resume
                break
            record.validation_map = validation["mAP"]
            record.coco_ap, record.coco_ap50 = validation["coco_AP"], validation["coco_AP50"]
            self.metrics.validation_map(epoch, validation["mAP"])
            self.history.append(record)
            if self.early_stopping.update(epoch, validation["mAP"]) and self.is_main:
                self.best_state = _cpu_state(self.model)
            self.scheduler.step()
            self.metrics.progress(100.0 * self.epochs_completed / config.epochs)
            if self.is_main:
                self.history.write(self.outputs.output_data_dir)
            self._save_checkpoint()
            self.log(f"epoch {epoch}: loss {record.train_loss:.4f}, validation mAP {validation['mAP']:.4f}, "
                     f"COCO AP {validation['coco_AP']:.4f}, {record.images_per_second:.1f} images/s")
            if self.early_stopping.should_stop(self.epochs_completed):
                self.log(f"early stopping after epoch {epoch}: no improvement of validation:mAP beyond "
                         f"{config.early_stopping_tolerance} for {config.early_stopping_patience} epochs")
                break
        stopped = self.stopping
        if stopped:
            self._save_checkpoint()
            self.log(f"stopped: checkpoint written to {self.outputs.checkpoint_file}")
        best_state = self.best_state if self.best_state is not None else _cpu_state(self.model)
        return TrainResult(best_state, self.early_stopping.best_epoch, self.early_stopping.best_map,
                           self.epochs_completed, stopped, self.history)

    def _autocast(self):
        dtype = self.runtime.amp_dtype
        return torch.autocast(self.runtime.device.type, dtype=dtype, enabled=dtype is not None)

    def _to_device(self, batch: Batch, distort: bool = False) -> Batch:
        return model_batch(batch, self.runtime.device, self.distortion if distort else None, self.channels_last)

    def _batches(self, epoch: int):
        """The epoch's batches, as long as every process has one and none was asked to stop; then
        the iteration ends (``self.stopping`` is set if some process was asked to stop: all processes
        see the same value, from the same all-reduce)."""
        sampler = getattr(self.train_loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        batches = iter(self.train_loader)
        while True:
            batch = next(batches, None)
            every_process_has_one, self.stopping = self.collective.step(batch is not None, self.stop.requested)
            if self.stopping or not every_process_has_one:
                return
            yield batch

    def _train_epoch(self, epoch: int) -> EpochRecord | None:
        self.model.train()
        totals = torch.zeros(2, device=self.runtime.device)
        images, batches = 0, 0
        started = time.perf_counter()
        progress = tqdm(self._batches(epoch), desc=f"epoch {epoch}", unit="batch", leave=False,
                        total=_length(self.train_loader), disable=not self.runtime.show_progress)
        for batch in progress:
            batch = self._to_device(batch, distort=True)
            with self.collective.model_step():
                with self._autocast():
                    cls_logits, box_codes = self.network(batch.images)
                losses = self.model.loss(cls_logits, box_codes, batch.boxes, batch.labels)
                loss = losses["cross_entropy"] + losses["smooth_l1"]
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            totals += torch.stack([losses["cross_entropy"].detach(), losses["smooth_l1"].detach()])
            images += batch.images.shape[0]
            batches += 1
            if batches % self.runtime.log_every == 0:
                ce, l1 = (totals / batches).tolist()
                self.metrics.train_loss(epoch, batches, ce, l1)
                progress.set_postfix(loss=f"{ce + l1:.3f}")
        if self.stopping:
            return None
        seconds = time.perf_counter() - started
        ce, l1 = (totals / max(batches, 1)).tolist()
        if not (math.isfinite(ce) and math.isfinite(l1)):
            raise SagedetError(
                f"training diverged in epoch {epoch}: the loss is {ce + l1} (learning_rate="
                f"{self.config.learning_rate}, optimizer={self.config.optimizer}); lower learning_rate")
        self.metrics.train_loss(epoch, batches, ce, l1)
        throughput = images / seconds if seconds > 0 else 0.0
        self.metrics.throughput(throughput)
        return EpochRecord(epoch=epoch, train_loss=ce + l1, train_cross_entropy=ce, train_smooth_l1=l1,
                           validation_map=float("nan"), coco_ap=float("nan"), coco_ap50=float("nan"),
                           learning_rate=self.optimizer.param_groups[0]["lr"], images_per_second=throughput,
                           seconds=seconds)

    @torch.no_grad()
    def evaluate(self, epoch: int) -> dict[str, float] | None:
        """validation:mAP (VOC AP at overlap_threshold, mean over classes) and COCO AP / AP50, over
        the whole validation set (each process's detections gathered, the figures computed by
        process 0 and shared)."""
        self.collective.share_buffers(self.model)
        self.model.eval()
        results: list[ImageDetections] = []
        for batch in tqdm(self.validation_loader, desc=f"validation {epoch}", unit="batch", leave=False,
                          disable=not self.runtime.show_progress):
            if self.stop.requested and not self.collective.active:  # several processes stop at a training step
                self.stopping = True
                return None
            batch = self._to_device(batch)
            with self._autocast():
                cls_logits, box_codes = self.model(batch.images)
            detections = self.model.postprocess(cls_logits, box_codes, self.config.nms_threshold)
            for det, boxes, labels in zip(detections, batch.boxes.cpu().numpy(), batch.labels.cpu().numpy()):
                valid = labels >= 0
                results.append(ImageDetections(
                    pred_boxes=det.boxes.cpu().numpy(), pred_scores=det.scores.cpu().numpy(),
                    pred_labels=det.labels.cpu().numpy(), gt_boxes=boxes[valid], gt_labels=labels[valid],
                    width=self.config.image_shape, height=self.config.image_shape))
        if self.collective.active:
            gathered = self.collective.all_gather(results)
            # interleaved back into the data's order (process r evaluated samples r, r + n, ...), so that
            # detections with equal scores rank as they would in one process
            ordered = [r for group in itertools.zip_longest(*gathered) for r in group if r is not None]
            figures: dict | None = None
            if self.is_main:
                try:
                    figures = self._figures(ordered)
                except DataError as error:  # every process must fail with it, none wait for the figures
                    figures = {"error": str(error)}
            figures = self.collective.broadcast(figures)
            if "error" in figures:
                raise DataError(figures["error"])
            return figures
        return self._figures(results)

    def _figures(self, results: list[ImageDetections]) -> dict[str, float]:
        if not any(len(result.gt_labels) for result in results):
            raise DataError(f"the validation data ({len(results)} images) holds no annotated object: validation:mAP "
                            "is measured against the validation channel's boxes; give it annotated images")
        voc = voc_map(results, self.config.num_classes, self.config.overlap_threshold)
        coco = coco_metrics(results, self.config.num_classes)
        return {"mAP": float(voc.mean_ap), **{k: float(v) for k, v in coco.items()}}


def _length(loader) -> int | None:  # noqa: ANN001
    """Batches in an epoch, or None for a stream."""
    try:
        return len(loader)
    except TypeError:
        return None


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
