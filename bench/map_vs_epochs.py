"""Validation mAP against epochs: the real training job on a generated data set, as a markdown table.

Writes an /opt/ml tree (hyperparameters and image+JSON channels from
:func:`sagedet.data.synthetic.write_synthetic_dataset`, source images 1.25 S × S) in a temporary
folder, runs ``container/train`` on it with ``SAGEDET_OPT_ML`` pointing there, and prints one row
per epoch of ``output/data/metrics.json`` (train loss, validation mAP, COCO AP, training images/s)
with the total wall time, to paste into docs/benchmarks.md. The job's own log goes to stderr.
The job's device and data workers follow ``SAGEDET_DEVICE`` and ``SAGEDET_DATA_WORKERS`` as usual.

    python bench/map_vs_epochs.py [--base-network mobilenet-v3] [--image-shape 128] [--epochs 30]
        [--train 240] [--validation 60] [--hp key=value ...] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from sagedet.data.synthetic import write_synthetic_dataset
from sagedet.sagemaker.hyperparameters import BASE_NETWORKS
from sagedet.sagemaker.local import write_training_config
from sagedet.sagemaker.paths import ROOT_ENV, SageMakerPaths
from sagedet.train.job import DEVICE_ENV
from train_throughput import command_line, machine_lines  # this script's neighbour in bench/

TRAIN_ENTRYPOINT = Path(__file__).resolve().parents[1] / "container" / "train"
HYPERPARAMETERS = {  # besides base_network, image_shape, epochs and num_training_samples, set from the options
    "num_classes": "3", "use_pretrained_model": "0", "optimizer": "adam", "learning_rate": "0.003",
    "mini_batch_size": "16", "lr_scheduler_step": "18,25",
}


def hyperparameters(args: argparse.Namespace) -> dict[str, str]:
    values = dict(HYPERPARAMETERS, base_network=args.base_network, image_shape=str(args.image_shape),
                  epochs=str(args.epochs), num_training_samples=str(args.train))
    values.update(args.hp)
    return values


def write_job(root: Path, args: argparse.Namespace, values: dict[str, str]) -> SageMakerPaths:
    paths = SageMakerPaths(root)
    image_size = (round(1.25 * args.image_shape), args.image_shape)
    write_synthetic_dataset(paths.data_dir, "train", args.train, seed=1, image_size=image_size)
    write_synthetic_dataset(paths.data_dir, "validation", args.validation, seed=2, image_size=image_size)
    write_training_config(paths, values)
    return paths


def run_job(paths: SageMakerPaths) -> tuple[int, float]:
    """Run the train entrypoint (its output to our stderr); return its exit status and wall seconds."""
    env = dict(os.environ, **{ROOT_ENV: str(paths.root)}, PYTHONUNBUFFERED="1")
    started = time.perf_counter()
    status = subprocess.run([sys.executable, str(TRAIN_ENTRYPOINT)], env=env, stdout=sys.stderr).returncode
    return status, time.perf_counter() - started


def _number(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def report(args: argparse.Namespace, values: dict[str, str], rows: list[dict], seconds: float) -> list[str]:
    device = torch.device(os.environ.get(DEVICE_ENV) or ("cuda" if torch.cuda.is_available() else "cpu"))
    lines = [
        "### Validation mAP against epochs", "",
        f"`{command_line()}`", "",
        *machine_lines(device),
        f"- data: {args.train} training and {args.validation} validation synthetic images "
        f"({round(1.25 * args.image_shape)}x{args.image_shape}, 3 classes)",
        f"- hyperparameters: `{json.dumps(values, sort_keys=True)}`",
        f"- total wall time of the job: {seconds / 60:.1f} min", "",
        "| epoch | train loss | validation mAP | COCO AP | images/s |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['epoch']} | {_number(r['train_loss'], 4)} | {_number(r['validation_map'], 4)} "
                     f"| {_number(r['coco_ap'], 4)} | {_number(r['images_per_second'], 1)} |")
    return lines


def key_value(text: str) -> tuple[str, str]:
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key, value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-network", choices=BASE_NETWORKS, default="mobilenet-v3")
    parser.add_argument("--image-shape", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--train", type=int, default=240, help="training images (default: 240)")
    parser.add_argument("--validation", type=int, default=60, help="validation images (default: 60)")
    parser.add_argument("--hp", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                        help="a hyperparameter, as SageMaker passes it (repeatable; overrides the above)")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="build the /opt/ml tree in DIR (new or empty) and keep it, model and logs included")
    args = parser.parse_args(argv)
    if args.keep is not None and args.keep.exists() and any(args.keep.iterdir()):
        parser.error(f"--keep {args.keep}: the folder is not empty (the job would resume from its checkpoint)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    values = hyperparameters(args)
    with tempfile.TemporaryDirectory(prefix="sagedet-map-") as tmp:
        paths = write_job(args.keep or Path(tmp) / "opt_ml", args, values)
        status, seconds = run_job(paths)
        if status != 0:
            reason = paths.failure_file.read_text() if paths.failure_file.is_file() else "no failure file"
            print(f"the training job failed (exit status {status}): {reason}", file=sys.stderr)
            return status
        rows = json.loads((paths.output_data_dir / "metrics.json").read_text())
    print("\n".join(report(args, values, rows, seconds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
