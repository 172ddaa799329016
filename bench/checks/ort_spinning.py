"""ONNX Runtime's pool threads after a run: spinning on (ONNX Runtime's default) against stopped when the
run returns (``session.force_spinning_stop``, what ``sagedet.export.onnx.OnnxRuntimeGraph`` sets since the
tenth session). One process, one image, random weights; four calls take turns with no pause between
them, each ONNX Runtime call being the server's onnxruntime path (the in-memory export, then the server's
NMS) and each followed by torchvision's eager SSD:

    ONNX Runtime (stop) → torchvision → ONNX Runtime (default) → torchvision → ...

so each ONNX Runtime call starts after a torch call, and each torchvision call shows what the session
before it left running. Then, as a worker serves requests back to back: two ``Predictor`` objects, one
on each session, answering ``predict_bytes`` on the same 640x480 JPEG (decode, resize, the graph, NMS,
the prediction), in blocks of requests back to back, the blocks taking turns (each block's first request,
which follows the other session's, untimed). Prints the medians in ms.

    python bench/checks/ort_spinning.py [--network mobilenet-v3] [--iterations 30] [--glibc-malloc-defaults]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from inference_latency import NMS_THRESHOLD, randomize, taking_turns  # noqa: E402
from machine import add_malloc_option, run_lines, set_malloc  # noqa: E402
from serve_load import test_image  # noqa: E402
from train_throughput import torchvision_peer  # noqa: E402

from sagedet.export import onnx as onnx_export  # noqa: E402
from sagedet.model.ssd import build_ssd, select_detections  # noqa: E402
from sagedet.sagemaker.hyperparameters import BASE_NETWORKS  # noqa: E402
from sagedet.serve.codecs import Options  # noqa: E402
from sagedet.serve.engines import Engine  # noqa: E402
from sagedet.serve.predictor import Predictor  # noqa: E402

BLOCK = 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--network", choices=BASE_NETWORKS, default="mobilenet-v3")
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--image-shape", type=int, default=300)
    add_malloc_option(parser)
    args = parser.parse_args()
    malloc = set_malloc(args)
    torch.manual_seed(0)
    model = randomize(build_ssd(args.network, 20, args.image_shape)).eval()
    peer, peer_name = torchvision_peer(args.network, model)
    peer = randomize(peer).eval()
    image = torch.rand(1, 3, args.image_shape, args.image_shape, generator=torch.Generator().manual_seed(1))
    exported = onnx_export.to_bytes(model)
    threads = torch.get_num_threads()
    stopped = onnx_export.OnnxRuntimeGraph(exported, threads, stop_spinning=True)
    spinning = onnx_export.OnnxRuntimeGraph(exported, threads, stop_spinning=False)
    calls = {
        "ONNX Runtime, spinning stopped after the run": lambda: select_detections(*stopped(image), NMS_THRESHOLD),
        "torchvision after it": lambda: peer([image[0]]),
        "ONNX Runtime, spinning on (default)": lambda: select_detections(*spinning(image), NMS_THRESHOLD),
        "torchvision after that": lambda: peer([image[0]]),
    }
    with torch.inference_mode():
        times = taking_turns(calls, args.iterations, warmup=3)
    metadata = {"image_shape": args.image_shape, "num_classes": 20, "base_network": args.network}
    photo = test_image(640, 480)
    predictors = {f"a request, {name}": Predictor(model, metadata, torch.device("cpu"), Engine("onnxruntime", graph))
                  for name, graph in [("spinning stopped", stopped), ("spinning on", spinning)]}
    times.update({name: [] for name in predictors})
    for _ in range(args.iterations // BLOCK):
        for name, predictor in predictors.items():
            for index in range(BLOCK + 1):  # the first request of a block follows the other session's: untimed
                started = time.perf_counter()
                predictor.predict_bytes(photo, Options(0.0, 100), max_pixels=10**8, wait=60)
                if index:
                    times[name].append((time.perf_counter() - started) * 1000)
    print("\n".join(run_lines(malloc)))
    print(f"- {args.network}, {threads} threads, torchvision {peer_name}, {args.iterations} rounds")
    for name, values in times.items():
        print(f"{name}: median {statistics.median(values):.1f} ms, mean {statistics.fmean(values):.1f} ms")


if __name__ == "__main__":
    main()
