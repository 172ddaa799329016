"""CPU time per training image of SSD's augmentation: torchvision's pipeline against sagedet's.

A data worker's work per image (read, JPEG decode, augmentation, resize to S x S, as
``DetectionDataset`` does it), in one process with one torch thread, on generated VOC-sized JPEGs
(500x375), the pipelines taking turns batch by batch:

- torchvision: ``RandomPhotometricDistort``, ``RandomZoomOut``, ``RandomIoUCrop``, flip, resize,
  ``SanitizeBoundingBoxes``, ``ToDtype`` — sagedet's ``train_transform`` before the eleventh session;
- sagedet, workers: ``train_transform`` now (zoom out, IoU crop and resize in one step since the
  thirteenth session, flip, ...), what a GPU machine's CPU cores still do per image;
- sagedet, on the CPU: the same plus ``scale_pixels`` (uint8 to float, which the workers left to the
  device since the twelfth session) and ``BatchPhotometricDistortion`` on each batch of ``--batch`` on
  the CPU (what CPU training adds in its main process), per image.

With ``--stages``, also each transform's share of the two worker pipelines' time (one more pass).

    .venv/bin/python bench/checks/augmentation_cost.py [--images 64] [--rounds 5] [--image-shape 300] [--stages]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torchvision.transforms import v2

from sagedet.data.batch_photometric import BatchPhotometricDistortion
from sagedet.data.dataset import DetectionDataset
from sagedet.data.imagejson import ImageJsonSource
from sagedet.data.synthetic import SYNTHETIC_CLASSES, write_synthetic_dataset
from sagedet.data.transforms import MEAN_PIXEL, scale_pixels, train_transform


def torchvision_transform(image_shape: int) -> v2.Compose:
    return v2.Compose([
        v2.RandomPhotometricDistort(),
        v2.RandomZoomOut(fill=MEAN_PIXEL, side_range=(1.0, 4.0), p=0.5),
        v2.RandomIoUCrop(),
        v2.RandomHorizontalFlip(),
        v2.Resize((image_shape, image_shape), antialias=True),
        v2.SanitizeBoundingBoxes(labels_getter=lambda inputs: inputs[1]["labels"]),
        v2.ToDtype(torch.float32, scale=True),
    ])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--image-shape", type=int, default=300)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--stages", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        write_synthetic_dataset(root, "train", args.images, seed=3, image_size=(500, 375))
        source = ImageJsonSource(root / "train", root / "train_annotation", len(SYNTHETIC_CLASSES), "train")
        theirs = DetectionDataset(source, torchvision_transform(args.image_shape))
        ours = DetectionDataset(source, train_transform(args.image_shape))
        distortion = BatchPhotometricDistortion()

        def run_theirs(indices):
            for i in indices:
                theirs[i]

        def run_workers(indices):
            for i in indices:
                ours[i]

        def run_on_cpu(indices):
            samples = [ours[i] for i in indices]
            distortion(scale_pixels(torch.stack([s.image for s in samples])), torch.stack([s.region for s in samples]))

        runs = {"torchvision": run_theirs, "sagedet, workers": run_workers, "sagedet, on the CPU": run_on_cpu}
        batches = [list(range(start, min(start + args.batch, args.images)))
                   for start in range(0, args.images, args.batch)]
        for run in runs.values():
            run(batches[0])  # warm-up
        per_image: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.rounds):
            spent = dict.fromkeys(runs, 0.0)
            for indices in batches:
                for name, run in runs.items():
                    started = time.perf_counter()
                    run(indices)
                    spent[name] += time.perf_counter() - started
            for name in runs:
                per_image[name].append(spent[name] / args.images * 1000)
        if args.stages:
            stages = {name: time_stages(dataset, args.images) for name, dataset in
                      (("torchvision", theirs), ("sagedet, workers", ours))}
    peer = statistics.median(per_image["torchvision"])
    print(f"{args.images} JPEGs 500x375, image_shape {args.image_shape}, batches of {args.batch}, 1 torch thread, "
          f"median of {args.rounds} rounds (ms per image)")
    print("| pipeline | ms per image | rounds | against torchvision |")
    print("|---|---|---|---|")
    for name, values in per_image.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.2f} | {', '.join(f'{v:.1f}' for v in values)} | {median / peer:.2f} |")
    if args.stages:
        print()
        print("| pipeline | " + " | ".join(f"stage {i + 1}" for i in range(max(map(len, stages.values())))) + " |")
        print("|---|" + "---|" * max(map(len, stages.values())))
        for name, spent in stages.items():
            print(f"| {name} | " + " | ".join(f"{stage} {ms:.2f}" for stage, ms in spent.items()) + " |")


class _Timed(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module, spent: dict[str, float]) -> None:
        super().__init__()
        self.inner, self.spent = inner, spent

    def forward(self, *inputs):
        started = time.perf_counter()
        outputs = self.inner(*inputs)
        name = type(self.inner).__name__
        self.spent[name] = self.spent.get(name, 0.0) + time.perf_counter() - started
        return outputs


def time_stages(dataset: DetectionDataset, images: int) -> dict[str, float]:
    """ms per image in each of the dataset's transforms, in one pass over the images (decoding not shown)."""
    spent: dict[str, float] = {}
    timed = DetectionDataset(dataset.source, v2.Compose([_Timed(t, spent) for t in dataset.transform.transforms]))
    for i in range(images):
        timed[i]
    return {name: seconds / images * 1000 for name, seconds in spent.items()}


if __name__ == "__main__":
    main()
