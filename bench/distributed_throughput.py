"""Training images/s with 1 and with 2 processes on CPU, through the real ``container/train``.

One process (the whole machine's torch threads) against two "hosts" on loopback (algo-1 and algo-2,
each a separate ``container/train`` with its own /opt/ml tree, mapped to 127.0.0.1, gloo, DDP, one
torch thread each), on the same generated data, hyperparameters and total batch
(``mini_batch_size`` B for two hosts is 2B images a step; the single process gets 2B). The figure is
the job's ``train:throughput`` of the last epoch (summed over the hosts), epoch 0 being a warm-up.

    python bench/distributed_throughput.py [--network mobilenet-v3] [--image-shape 300] [--images 96]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
from pathlib import Path


from sagedet.data.synthetic import write_synthetic_dataset
from sagedet.sagemaker.local import write_training_config
from sagedet.sagemaker.paths import SageMakerPaths
from machine import run_lines

REPO = Path(__file__).resolve().parents[1]
TRAIN = REPO / "container" / "train"
THROUGHPUT = re.compile(r"#throughput_metric: host=(\S+), train throughput=(\S+) records/second")


def job(root: Path, hyperparameters: dict, images: int, hosts: tuple[str, ...], host: str) -> SageMakerPaths:
    paths = SageMakerPaths(root)
    write_synthetic_dataset(paths.data_dir, "train", images, seed=1, image_size=(500, 375))
    write_synthetic_dataset(paths.data_dir, "validation", 8, seed=2, image_size=(500, 375))
    write_training_config(paths, hyperparameters, hosts=hosts, current_host=host)
    if len(hosts) > 1:
        config = json.loads(paths.resource_config_file.read_text())
        paths.resource_config_file.write_text(json.dumps({**config, "network_interface_name": "lo"}))
    return paths


def last_epoch_throughput(log: str) -> float:
    figures = [float(value) for _, value in THROUGHPUT.findall(log)]
    if not figures:
        raise RuntimeError(f"no throughput line in the log:\n{log[-3000:]}")
    return figures[-1]


def run(jobs: list[SageMakerPaths], env: dict[str, str]) -> list[str]:
    processes = [subprocess.Popen([sys.executable, str(TRAIN)], env=dict(env, SAGEDET_OPT_ML=str(paths.root)),
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for paths in jobs]
    logs = [process.communicate(timeout=3600)[0] for process in processes]
    for process, log in zip(processes, logs):
        if process.returncode != 0:
            raise RuntimeError(f"train exited {process.returncode}:\n{log[-3000:]}")
    return logs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--network", default="mobilenet-v3")
    parser.add_argument("--image-shape", type=int, default=300)
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--batch", type=int, default=8, help="mini_batch_size per host (the single process gets 2x)")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args(argv)
    base = {"num_classes": "3", "num_training_samples": str(args.images), "base_network": args.network,
            "use_pretrained_model": "0", "image_shape": str(args.image_shape), "epochs": str(args.epochs),
            "optimizer": "sgd", "learning_rate": "0.001"}
    env = dict(os.environ, SAGEDET_DEVICE="cpu", SAGEDET_DATA_WORKERS="1", PYTHONUNBUFFERED="1")
    rows = []
    with tempfile.TemporaryDirectory(prefix="sagedet-dist-bench-") as work:
        root = Path(work)
        single = job(root / "single", {**base, "mini_batch_size": str(2 * args.batch)}, args.images, ("algo-1",),
                     "algo-1")
        print("one process ...", file=sys.stderr, flush=True)
        one = last_epoch_throughput(run([single], env)[0])
        rows.append(("1 process, 1 host", os.cpu_count(), 2 * args.batch, one))
        hosts = ("algo-1", "algo-2")
        jobs = [job(root / host, {**base, "mini_batch_size": str(args.batch), "kv_store": "dist_sync"}, args.images,
                    hosts, host) for host in hosts]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        print("two processes ...", file=sys.stderr, flush=True)
        logs = run(jobs, dict(env, OMP_NUM_THREADS="1", SAGEDET_MASTER_PORT=str(port),
                              SAGEDET_HOST_ADDRESSES=json.dumps({h: "127.0.0.1" for h in hosts})))
        two = sum(last_epoch_throughput(log) for log in logs)
        rows.append(("2 processes, 2 hosts on loopback (gloo)", 1, args.batch, two))
    lines = [
        *run_lines(),
        f"- job: {args.network} at {args.image_shape}, {args.images} training images 500×375, {args.epochs} epochs "
        "(the last one's train:throughput), 1 DataLoader worker per process",
        "",
        "| processes | torch threads each | images per process per step | images/s (all processes) | vs 1 process |",
        "|---|---|---|---|---|",
        *(f"| {name} | {threads} | {batch} | {rate:.2f} | {rate / one:.2f}× |" for name, threads, batch, rate in rows),
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
