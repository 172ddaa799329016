"""The acceptance test's training recipe under other training seeds: how far its outcome moves.

``tests/job/test_train_learns.py`` trains mobilenet-v3 from scratch on the generated set (240 images,
128 px, adam at 0.001, 40 epochs, steps at 30 and 36) and asks for a best validation mAP of at least
0.8, at the last epoch too. Training is seeded (``sagedet.train.job.SEED``) and repeats exactly on one
machine, so the test gives one trajectory; this runs the same recipe through the real entrypoint with
the seed set to each of ``--seeds`` instead, one run after the other (two at once on 2 cores oversubscribe the CPU about
tenfold), and prints each run's validation mAP per epoch, its best and its last. ``--epochs`` and
``--learning-rate`` try other recipes (the steps stay at 3/4 and 9/10 of the epochs).

    .venv/bin/python bench/checks/acceptance_seeds.py --seeds 0 1 [--epochs 40] [--learning-rate 0.001]

To compare two commits, run it from a ``git worktree`` of the other one with ``PYTHONPATH=<worktree>/src``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sagedet.cli import main as sagedet
from sagedet.sagemaker.metrics_log import METRIC_DEFINITIONS

VALIDATION_MAP = re.compile(next(d["Regex"] for d in METRIC_DEFINITIONS if d["Name"] == "validation:mAP"))


def run(seed: int, epochs: int, learning_rate: float, folder: Path) -> list[float]:
    sagedet(["sample-data", str(folder), "--train", "240", "--validation", "60", "--image-shape", "128",
             "--mini-batch-size", "16", "--epochs", str(epochs), "--learning-rate", str(learning_rate),
             "--lr-scheduler-step", f"{epochs * 3 // 4},{epochs * 9 // 10}"])
    entrypoint = f"import sys, sagedet.train.job as job; job.SEED = {seed}; sys.exit(job.main())"
    env = dict(os.environ, SAGEDET_OPT_ML=str(folder), SAGEDET_DATA_WORKERS="2", PYTHONUNBUFFERED="1")
    result = subprocess.run([sys.executable, "-c", entrypoint], env=env, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"seed {seed}: training failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return [float(v) for v in VALIDATION_MAP.findall(result.stdout)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--learning-rate", type=float, default=0.001)
    args = parser.parse_args()
    for seed in args.seeds:
        started = time.time()
        with tempfile.TemporaryDirectory(prefix="sagedet-bench-") as folder:
            maps = run(seed, args.epochs, args.learning_rate, Path(folder))
        best = max(range(len(maps)), key=maps.__getitem__)
        passes = maps[best] >= 0.8 and maps[-1] >= 0.8
        print(f"seed {seed}, learning rate {args.learning_rate}: best validation mAP {maps[best]:.3f} at epoch {best}, "
              f"last {maps[-1]:.3f}, {'passes' if passes else 'FAILS'} the test's 0.8 (best and last) "
              f"({(time.time() - started) / 60:.1f} min); per epoch: {', '.join(f'{m:.3f}' for m in maps)}",
              flush=True)


if __name__ == "__main__":
    main()
