"""Training-step throughput (images/s) of sagedet's SSD, next to torchvision's SSD on the same network.

For each base network and image size (default 300 and 512), at one batch size:

- **ours**: one training step of :class:`~sagedet.model.ssd.SSDDetector` (forward, ``model.loss``,
  backward, SGD step) on fixed random batches (random images, 1-3 random boxes each, padded with
  label -1 as :func:`sagedet.data.dataset.collate` pads); no data loading.
- **torchvision**: the same step for torchvision's ``SSD``, whose forward in train mode resizes and
  normalizes each image, matches default boxes image by image and returns its loss, fed the same
  batches (boxes in pixels, labels + 1), its fixed input size set to ours. For vgg-16 it is
  torchvision's ``ssd300_vgg16``, our network parameter for parameter below 512 pixels. Otherwise
  (resnet-50, mobilenet-v3, vgg-16 at 512 and up) it is torchvision's ``SSD`` class around copies
  of our base network, head and default boxes: ``ssdlite320_mobilenet_v3_large`` without
  pretrained weights halves the channels of MobileNetV3's last stage ("reduced tail"), a smaller
  network than ours. Either way the peer has our parameter and default-box counts (checked), so
  it differs from ours only in torchvision's transform, matching and loss.
- **ours with data loading**: our step fed by a DataLoader over a generated image+JSON set
  (VOC-sized JPEGs) with the job's training augmentation and collate, as a training epoch runs
  (since the eleventh session with the photometric distortion the Trainer applies on the device,
  counted in the waiting time),
  and the share of that run's time spent waiting for the next batch.

Both models train as the job's Trainer trains: on CUDA channels-last, bf16 (else fp16) autocast,
fused SGD; on the CPU in fp32, ours channels-last where the base network trains faster so
(``BaseNetwork.cpu_channels_last``: mobilenet-v3, resnet-50) and with its 3x3 convolutions computed
by Winograd's algorithm as the Trainer converts them (``sagedet.model.winograd``: vgg-16, resnet-50;
since 2026-11-22, ninth session, each layer timed against torch's convolution first and the slower given
back, ``sagedet.model.winograd_tuning``), torchvision's as torchvision runs (NCHW, torch's
convolutions). The peer is built before ours is converted.

Steps are timed with ``time.perf_counter()`` after the warm-up steps (CUDA synchronized); our step
and torchvision's take turns, one step each per round, so that the shared machine's drifts in speed
hit both alike (before 2026-11-21 23:50 UTC the two ran one after the other). The output is markdown,
to paste into docs/benchmarks.md; progress goes to stderr.

    python bench/train_throughput.py [--networks vgg-16 resnet-50 mobilenet-v3] [--image-shapes 300 512]
        [--batch-size 8] [--steps 10] [--warmup 3] [--device cpu] [--threads N] [--workers N]
        [--glibc-malloc-defaults]
"""

from __future__ import annotations

import argparse
import copy
import datetime
import itertools
import os
import platform
import shlex
import sys
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import Tensor, nn
from torch.utils.data import DataLoader, RandomSampler
from torchvision.models.detection.ssd import SSD, ssd300_vgg16
from torchvision.models.detection.ssdlite import SSDLiteHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from sagedet.data.batch_photometric import BatchPhotometricDistortion
from sagedet.data.dataset import Batch, DetectionDataset, collate
from sagedet.data.imagejson import ImageJsonSource
from sagedet.data.loaders import PREFETCH_FACTOR, shared_memory_free, workers_that_fit
from sagedet.data.synthetic import write_synthetic_dataset
from sagedet.data.transforms import train_transform
from sagedet.model import winograd_tuning
from sagedet.model.ssd import SSDDetector, _default_box_generator, build_ssd, minimum_image_shape
from sagedet.model.winograd import use_winograd
from sagedet.sagemaker.hyperparameters import BASE_NETWORKS
from sagedet.train.job import default_data_workers
from sagedet.train.loop import Runtime, model_batch
from machine import add_malloc_option, cpu_name, set_malloc

SOURCE_IMAGE_SIZE = (500, 375)  # (width, height) of the generated JPEGs: a typical PASCAL VOC image
DATA_IMAGES = 1024  # at most this many generated (27.8 ms each on one Zen 4 core), drawn again as needed
MAX_OBJECTS = 3  # random boxes per image: 1 to MAX_OBJECTS
LEARNING_RATE = 1e-4  # small, so that random targets do not drive the weights to inf during the run


def machine_lines(device: torch.device, malloc: str | None = None) -> list[str]:
    """Markdown lines naming the machine, the software and the date (and what set_malloc did)."""
    cpu = cpu_name()
    accelerator = f"{device} ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else str(device)
    return [
        f"- machine: {cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads",
        f"- software: Python {platform.python_version()}, torch {torch.__version__}, "
        f"torchvision {torchvision.__version__}",
        f"- device: {accelerator}" + (f"; {malloc}" if malloc else ""),
        f"- date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
    ]


def command_line() -> str:
    return shlex.join(["python", *sys.argv])


def random_batches(count: int, batch_size: int, image_shape: int, num_classes: int, seed: int = 0) -> list[Batch]:
    """Random images with 1 to MAX_OBJECTS random boxes each (normalized xyxy), padded as collate pads."""
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(count):
        images = torch.rand(batch_size, 3, image_shape, image_shape, generator=generator)
        sizes = 0.1 + 0.5 * torch.rand(batch_size, MAX_OBJECTS, 2, generator=generator)
        corners = (1 - sizes) * torch.rand(batch_size, MAX_OBJECTS, 2, generator=generator)
        boxes = torch.cat([corners, corners + sizes], dim=-1)
        labels = torch.randint(num_classes, (batch_size, MAX_OBJECTS), generator=generator)
        counts = torch.randint(1, MAX_OBJECTS + 1, (batch_size, 1), generator=generator)
        padding = torch.arange(MAX_OBJECTS) >= counts
        boxes[padding] = 0.0
        labels[padding] = -1
        batches.append(Batch(images, boxes, labels, [f"random_{i}" for i in range(batch_size)]))
    return batches


class _DictFeatures(nn.Module):
    """Our feature extractors return a list of maps; torchvision's SSD wants an OrderedDict."""

    def __init__(self, features: nn.Module):
        super().__init__()
        self.features = features

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        return OrderedDict((str(i), m) for i, m in enumerate(self.features(x)))


def _fixed_size_transform(peer: SSD, image_shape: int) -> GeneralizedRCNNTransform:
    """torchvision's builders fix the input at 300 or 320 pixels; make the peer see S×S like ours."""
    t = peer.transform
    return GeneralizedRCNNTransform(image_shape, image_shape, t.image_mean, t.image_std, size_divisible=1,
                                    fixed_size=(image_shape, image_shape))


def _counts(model: nn.Module, features: nn.Module, head: nn.Module, image_shape: int) -> tuple[int, int]:
    """(parameters, default boxes) of a detector, the boxes counted from one forward of a blank image."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        maps = features(torch.zeros(1, 3, image_shape, image_shape))
        boxes = head(list(maps.values()) if isinstance(maps, dict) else maps)["cls_logits"].shape[1]
    model.train(was_training)
    return sum(p.numel() for p in model.parameters()), boxes


def torchvision_peer(network: str, ours: SSDDetector) -> tuple[SSD, str]:
    """torchvision's SSD for the same network as ``ours``, and a name for it (see the module docstring)."""
    size, classes = ours.image_shape, ours.num_classes + 1
    own = _counts(ours, ours.features, ours.head, size)
    if network == "vgg-16":
        peer = ssd300_vgg16(weights=None, weights_backbone=None, num_classes=classes)
        peer.transform = _fixed_size_transform(peer, size)
        if _counts(peer, peer.backbone, peer.head, size) == own:
            return peer, "ssd300_vgg16"
    kind = "ssdlite" if isinstance(ours.head, SSDLiteHead) else "ssd"
    maps = len(ours.head.classification_head.module_list)
    peer = SSD(_DictFeatures(copy.deepcopy(ours.features)), _default_box_generator(kind, maps), (size, size),
               classes, image_mean=ours.image_mean.flatten().tolist(), image_std=ours.image_std.flatten().tolist(),
               head=copy.deepcopy(ours.head))
    if _counts(peer, peer.backbone, peer.head, size) != own:
        raise RuntimeError(f"torchvision's SSD around our {network} differs from ours in parameters or default boxes")
    return peer, "SSD class, our base network"


def peer_inputs(batch: Batch) -> tuple[list[Tensor], list[dict[str, Tensor]]]:
    """A batch as torchvision's SSD takes it: a list of images, targets in pixels with labels from 1."""
    size = batch.images.shape[-1]
    targets = [{"boxes": boxes[labels >= 0] * size, "labels": labels[labels >= 0] + 1}
               for boxes, labels in zip(batch.boxes, batch.labels)]
    return list(batch.images), targets


class Stepper:
    """One training step (forward and loss, backward, SGD step), with the Trainer's CUDA settings."""

    def __init__(self, model: nn.Module, device: torch.device):
        runtime = Runtime(device)
        self.model = model.to(device)
        self.channels_last = runtime.cuda or getattr(model, "cpu_channels_last", False)  # as the Trainer
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.model.train()
        self.amp_dtype = runtime.amp_dtype
        self.device = device
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.SGD(trainable, lr=LEARNING_RATE, momentum=0.9, weight_decay=5e-4,
                                         fused=runtime.cuda or None)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)

    def losses(self, inputs: Any) -> dict[str, Tensor]:
        raise NotImplementedError

    def __call__(self, inputs: Any) -> None:
        loss = sum(self.losses(inputs).values())
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()


class OursStepper(Stepper):
    def __init__(self, model: nn.Module, device: torch.device, batch_size: int | None = None):
        """On the CPU the model's 3x3 layers are converted as the Trainer converts them (in place: the
        optimizer keeps its parameters); with ``batch_size``, each is then timed against torch's
        convolution at the model's image size, and the slower given back, as the Trainer does."""
        super().__init__(model, device)
        if device.type != "cuda":
            use_winograd(self.model, training=True)
            if batch_size:
                slower, line = winograd_tuning.choose(self.model, self.model.image_shape, batch_size,
                                                      self.channels_last)
                log(line)
                winograd_tuning.use_torch_convolution(self.model, slower)

    def losses(self, batch: Batch) -> dict[str, Tensor]:
        with self.autocast():  # the loss outside autocast, as in the Trainer
            cls_logits, box_codes = self.model(batch.images)
        return self.model.loss(cls_logits, box_codes, batch.boxes, batch.labels)


class PeerStepper(Stepper):
    def losses(self, inputs: tuple[list[Tensor], list[dict[str, Tensor]]]) -> dict[str, Tensor]:
        with self.autocast():  # torchvision computes its loss inside forward
            return self.model(*inputs)


def to_device(batch: Batch, device: torch.device) -> Batch:
    batch = batch.to(device, non_blocking=True)
    if device.type == "cuda":
        batch.images = batch.images.contiguous(memory_format=torch.channels_last)
    return batch


def images_per_second(step: Callable[[Any], None], inputs: Iterator[Any], batch_size: int, warmup: int, steps: int,
                      device: torch.device) -> tuple[float, float]:
    """Run ``warmup`` untimed steps, then time ``steps`` steps; inputs are fetched inside the timing.
    Returns images/s and the share of the time spent waiting for the next batch."""
    for _ in range(warmup):
        step(next(inputs))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    waiting = 0.0
    for _ in range(steps):
        asked = time.perf_counter()
        batch = next(inputs)
        waiting += time.perf_counter() - asked
        step(batch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - started
    return steps * batch_size / elapsed, waiting / elapsed


def alternating_images_per_second(runs: dict[str, tuple[Callable[[Any], None], Iterator[Any]]], batch_size: int,
                                  warmup: int, steps: int, device: torch.device) -> dict[str, float]:
    """images/s of several steps timed in turns, one step of each per round after ``warmup`` untimed
    steps each, so that a drift of the shared machine's speed hits them alike."""
    for step, inputs in runs.values():
        for _ in range(warmup):
            step(next(inputs))
    seconds = dict.fromkeys(runs, 0.0)
    for _ in range(steps):
        for name, (step, inputs) in runs.items():
            batch = next(inputs)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            started = time.perf_counter()
            step(batch)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds[name] += time.perf_counter() - started
    return {name: steps * batch_size / total for name, total in seconds.items()}


def loader_inputs(dataset: DetectionDataset, batch_size: int, batches: int, workers: int, device: torch.device,
                  channels_last: bool) -> Iterator[Batch]:
    """``batches`` batches as the Trainer's DataLoader makes them, on the device as the Trainer puts them
    there (:func:`sagedet.train.loop.model_batch`, photometric distortion included): one pass drawing
    the set's images at random, as often as it takes (no epoch boundary inside the timing; the set may
    hold fewer images than the batches take). The workers start (fork) at the first batch, so the
    copy-on-write page faults that slow the next few steps fall in the warm-up."""
    sampler = RandomSampler(dataset, num_samples=batches * batch_size)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=True, num_workers=workers,
                        collate_fn=collate, pin_memory=device.type == "cuda",
                        prefetch_factor=PREFETCH_FACTOR if workers else None)
    distortion = BatchPhotometricDistortion()  # the Trainer's photometric distortion, on the device
    return (model_batch(batch, device, distortion, channels_last) for batch in loader)


def measure(network: str, image_shape: int, args: argparse.Namespace, device: torch.device,
            data_root: Path) -> dict[str, Any]:
    torch.manual_seed(0)
    ours = build_ssd(network, args.num_classes, image_shape)
    peer, peer_name = torchvision_peer(network, ours)
    batches = [to_device(b, device) for b in random_batches(4, args.batch_size, image_shape, args.num_classes)]
    timing = dict(batch_size=args.batch_size, warmup=args.warmup, steps=args.steps, device=device)

    log(f"{network} at {image_shape}: our step and torchvision's ({peer_name}), taking turns")
    stepper = OursStepper(ours, device, args.batch_size)
    rates = alternating_images_per_second({
        "ours": (stepper, itertools.cycle(batches)),
        "peer": (PeerStepper(peer, device), itertools.cycle([peer_inputs(b) for b in batches])),
    }, **timing)
    ours_rate, peer_rate = rates["ours"], rates["peer"]
    del peer  # free its memory before the data-loading run

    # As many workers as /dev/shm holds (the Trainer's rule), and a warm-up that outlasts the batches
    # they make ready before the first step: the timed steps see the workers' steady rate.
    workers = workers_that_fit(args.workers, args.batch_size * 3 * image_shape ** 2, shared_memory_free())
    warmup = max(args.warmup, workers * PREFETCH_FACTOR)
    log(f"{network} at {image_shape}: our step with data loading ({workers} workers, {warmup} warm-up steps)")
    source = ImageJsonSource(data_root / "train", data_root / "train_annotation", args.num_classes, "train")
    dataset = DetectionDataset(source, train_transform(image_shape))
    loaded = loader_inputs(dataset, args.batch_size, warmup + args.steps, workers, device, stepper.channels_last)
    data_rate, waiting = images_per_second(stepper, loaded, **{**timing, "warmup": warmup})
    return {"network": network, "image_shape": image_shape, "peer": peer_name, "ours": ours_rate,
            "peer_rate": peer_rate, "data": data_rate, "waiting": waiting, "workers": workers}


def table(rows: Iterable[dict[str, Any]], batch_size: int) -> list[str]:
    lines = [
        "| network | image size | batch | ours img/s | torchvision img/s | ratio (ours/peer) "
        "| ours with data loading img/s | share of that time waiting for data | data workers | torchvision peer |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['network']} | {r['image_shape']} | {batch_size} | {r['ours']:.2f} | {r['peer_rate']:.2f} "
                     f"| {r['ours'] / r['peer_rate']:.2f} | {r['data']:.2f} | {r['waiting']:.0%} | {r['workers']} "
                     f"| {r['peer']} |")
    return lines


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--networks", nargs="+", choices=BASE_NETWORKS, default=list(BASE_NETWORKS))
    parser.add_argument("--image-shapes", type=int, nargs="+", default=[300, 512])
    parser.add_argument("--batch-size", type=int, help="images per step (default: 8 on CPU, 32 on CUDA)")
    parser.add_argument("--steps", type=int, help="timed steps per figure (default: 10 on CPU, 50 on CUDA)")
    parser.add_argument("--warmup", type=int, help="untimed steps before each figure (default: 3 on CPU, 10 on CUDA)")
    parser.add_argument("--num-classes", type=int, default=20, help="object classes (default: 20, as PASCAL VOC)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--workers", type=int,
                        help="DataLoader workers for the data-loading figure (default: as the job, "
                             "sagedet.train.job.default_data_workers: on CUDA the cores less one, else min(4, cores))")
    add_malloc_option(parser)
    args = parser.parse_args(argv)
    cuda = torch.device(args.device).type == "cuda"
    if cuda and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available on this machine; use --device cpu")
    defaults = {"batch_size": (8, 32), "steps": (10, 50), "warmup": (3, 10)}
    for name, (cpu_value, cuda_value) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, cuda_value if cuda else cpu_value)
    if args.workers is None:
        args.workers = default_data_workers(torch.device(args.device), 1)
    if args.batch_size < 2:
        parser.error("--batch-size must be >= 2 (batch normalization in resnet-50 and mobilenet-v3)")
    for network in args.networks:
        smallest = minimum_image_shape(network)
        for shape in args.image_shapes:
            if shape < smallest:
                parser.error(f"--image-shapes {shape} is too small for {network}: use >= {smallest}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    malloc = set_malloc(args) if device.type == "cpu" else None  # as the Trainer on the CPU
    with tempfile.TemporaryDirectory(prefix="sagedet-bench-") as tmp:
        data_root = Path(tmp)
        images = min(args.batch_size * (args.warmup + args.steps), DATA_IMAGES)
        log(f"writing {images} synthetic {SOURCE_IMAGE_SIZE[0]}x{SOURCE_IMAGE_SIZE[1]} JPEGs to {data_root}")
        write_synthetic_dataset(data_root, "train", images, seed=0, image_size=SOURCE_IMAGE_SIZE)
        rows = [measure(network, shape, args, device, data_root) for shape in args.image_shapes
                for network in args.networks]
    lines = [
        "### Training throughput", "",
        f"`{command_line()}`", "",
        *machine_lines(device, malloc),
        f"- timing: {args.warmup} warm-up steps, then {args.steps} timed steps; {args.num_classes} classes; "
        f"data loading with up to {args.workers} workers (as many as /dev/shm holds) from {images} "
        f"{SOURCE_IMAGE_SIZE[0]}x{SOURCE_IMAGE_SIZE[1]} JPEGs drawn at random, after at least 2 warm-up steps "
        "per worker (the batches the workers make ready before the first step)", "",
        *table(rows, args.batch_size),
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
