"""Peak resident memory of a process running two CPU training steps (batch 8) of one network, with
torch's convolutions, with Winograd as the server converts (the wide 3x3 layers) or as the Trainer
converts (also the narrower layers, for the backward pass), or as the Trainer converts keeping the
transformed tiles for the backward pass (``trainer-kept-tiles``, as before the sixth session of
2026-11-22). Run once per kind, each in a fresh process: ru_maxrss is the process's peak.

    .venv/bin/python bench/checks/training_memory.py none|server|trainer|trainer-kept-tiles [--network vgg-16]
        [--image-shape 300]
"""

import argparse
import resource
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import OursStepper, random_batches  # noqa: E402
from winograd_training import KeptTiles, WideLayersOnly, WithoutWinograd  # noqa: E402

from sagedet.model.ssd import build_ssd  # noqa: E402

KINDS = {"none": WithoutWinograd, "server": WideLayersOnly, "trainer": OursStepper, "trainer-kept-tiles": KeptTiles}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--network", default="vgg-16")
    parser.add_argument("--image-shape", type=int, default=300)
    args = parser.parse_args()
    torch.manual_seed(0)
    step = KINDS[args.kind](build_ssd(args.network, 20, args.image_shape), torch.device("cpu"))
    for batch in random_batches(2, 8, args.image_shape, 20):
        step(batch)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # KiB on Linux
    print(f"{args.network} at {args.image_shape}, batch 8, {args.kind}: peak resident memory {peak:.2f} GiB")


if __name__ == "__main__":
    main()
