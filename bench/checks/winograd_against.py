"""The server's ``winograd`` path with this checkout's ``sagedet.model.winograd`` against the same path
with that module as an earlier commit had it, and torchvision's eager SSD, the three taking turns call
by call in one process (one image, 300 px by default, random weights): how much a change to the
Winograd layers moved single-image latency, measured so that the machine's drift (10-40% within
minutes here) hits all three alike. The earlier module is read with ``git show COMMIT:src/sagedet/
model/winograd.py`` and loaded under another name; the rest of the path (model, tracing, NMS) is this
checkout's. Prints each median, both ratios to torchvision and the largest output difference.

    python bench/checks/winograd_against.py COMMIT [--network vgg-16] [--iterations 20] [--image-shape 300]
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from inference_latency import NMS_THRESHOLD, randomize, taking_turns  # noqa: E402
from machine import add_malloc_option, set_malloc  # noqa: E402
from train_throughput import torchvision_peer  # noqa: E402

from sagedet.model.ssd import build_ssd, select_detections  # noqa: E402
from sagedet.serve.engines import torchscript_path, winograd_path  # noqa: E402


def earlier_module(commit: str):
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:src/sagedet/model/winograd.py"],
                            check=True, capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "winograd_earlier.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("winograd_earlier", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("commit")
    parser.add_argument("--network", default="vgg-16")
    parser.add_argument("--image-shape", type=int, default=300)
    parser.add_argument("--iterations", type=int, default=20)
    add_malloc_option(parser)
    args = parser.parse_args()
    malloc = set_malloc(args)
    earlier = earlier_module(args.commit)
    torch.manual_seed(0)
    model = randomize(build_ssd(args.network, 20, args.image_shape)).eval()
    peer, peer_name = torchvision_peer(args.network, model)
    peer = randomize(peer).eval()
    cpu = torch.device("cpu")
    now = winograd_path(model, cpu)
    converted = copy.deepcopy(model)
    earlier.use_winograd(converted)
    before = torchscript_path(converted, cpu)
    image = torch.rand(1, 3, args.image_shape, args.image_shape, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        difference = max((a - b).abs().max().item() for a, b in zip(now(image), before(image)))
        times = taking_turns({"torchvision": lambda: peer([image[0]]),
                              args.commit: lambda: select_detections(*before(image), NMS_THRESHOLD),
                              "this checkout": lambda: select_detections(*now(image), NMS_THRESHOLD)},
                             args.iterations, warmup=3)
    medians = {name: statistics.median(ms) for name, ms in times.items()}
    print(f"{args.network} at {args.image_shape}, {torch.get_num_threads()} threads; {malloc}; "
          f"torchvision: {peer_name}")
    for name, ms in medians.items():
        print(f"{name}: {ms:.1f} ms ({ms / medians['torchvision']:.3f}x torchvision)")
    print(f"largest output difference between the two: {difference:.1e}")


if __name__ == "__main__":
    main()
