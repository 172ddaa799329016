"""Load on the real inference server (``container/serve``, gunicorn) over loopback, next to eager
single-image inference in one process, ours and torchvision's.

For each base network (default: all three at image_shape 300, 80 classes, untrained weights: speed
does not depend on them):

- **server**: the script starts ``container/serve`` on 127.0.0.1 with the model in a temporary
  /opt/ml tree, then runs ``--clients`` client threads in this process (a second process), each
  posting the same JPEG (``--image-size``, default 640×480, a typical photo) to /invocations over
  its own kept-alive connection, back to back, for ``--seconds`` after ``--warmup-seconds`` of the
  same load. It reports requests, failures (any status but 200, any connection error),
  requests/s, and p50 / p99 latency for three configurations: the server's default (one worker
  per CPU, at most 8, the CPUs' threads shared out); one worker with all the CPUs' torch threads
  (the default for SAGEMAKER_MODEL_SERVER_WORKERS=1); one worker with the default's threads per
  worker (SAGEDET_TORCH_THREADS). Each server is stopped with SIGTERM (it must exit 0).
- **in process**: single-image latency (``--threads``, default every CPU): our predictor's full
  path (decode, resize, model, thresholds, JSON) and the model alone; and torchvision's own eager
  ``ssd300_vgg16`` (for vgg-16) and ``ssdlite320_mobilenet_v3_large`` (for mobilenet-v3), without
  weights, called on the decoded image as a float tensor (their own resize, normalization and
  post-processing included), measured in the same run as the peer.

The client threads share the machine's CPUs with the server: the figures are for loopback on one
machine. The output is markdown (command, machine, date, load average); progress goes to stderr.
The script exits 1 if any request failed.

    python bench/serve_load.py [--networks vgg-16 resnet-50 mobilenet-v3] [--image-shape 300]
        [--clients N] [--seconds 30] [--warmup-seconds 5] [--iterations 20] [--image-size 640x480]
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import io
import json
import os
import platform
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from torchvision.models.detection import ssd300_vgg16, ssdlite320_mobilenet_v3_large
from torchvision.transforms.v2 import functional as F

from sagedet.artifacts import save_model
from sagedet.model.ssd import build_ssd
from sagedet.serve.codecs import Options, ResponseForm, decode_image, encode
from sagedet.serve.predictor import Predictor
from sagedet.serve.settings import default_workers, usable_cpus
from machine import cpu_name

REPO = Path(__file__).resolve().parents[1]
SERVE = REPO / "container" / "serve"
NUM_CLASSES = 80
PEERS = {"vgg-16": ("ssd300_vgg16", ssd300_vgg16), "mobilenet-v3": ("ssdlite320_mobilenet_v3_large",
                                                                    ssdlite320_mobilenet_v3_large)}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def machine_lines() -> list[str]:
    cpu = cpu_name()
    return [
        f"- machine: {cpu}, {os.cpu_count()} cores ({usable_cpus()} usable), CPU only",
        f"- software: Python {platform.python_version()}, torch {torch.__version__}, "
        f"torchvision {torchvision.__version__}",
        f"- date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
    ]


def load_average() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def test_image(width: int, height: int) -> bytes:
    """A photo-like JPEG: gradients, a few flat shapes, sensor-like noise."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 255 // (width - 1), y * 255 // (height - 1), (x + y) * 127 // (width + height - 2)],
                      axis=-1).astype(np.int32)
    for _ in range(6):
        x0, y0 = rng.integers(0, width * 3 // 4), rng.integers(0, height * 3 // 4)
        pixels[y0:y0 + height // 4, x0:x0 + width // 4] = rng.integers(0, 255, 3)
    pixels += rng.integers(-12, 13, pixels.shape)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def write_model(root: Path, network: str, image_shape: int) -> Path:
    model_dir = root / "model"
    model = build_ssd(network, NUM_CLASSES, image_shape)
    save_model(model_dir, model.state_dict(), {
        "base_network": network, "num_classes": NUM_CLASSES, "image_shape": image_shape, "nms_threshold": 0.45,
        "class_names": [f"class{i}" for i in range(NUM_CLASSES)], "sagedet_version": "bench"})
    return model_dir


def percentiles(seconds: list[float]) -> tuple[float, float]:
    if not seconds:
        return float("nan"), float("nan")
    p50, p99 = np.percentile(np.array(seconds) * 1000, [50, 99])
    return float(p50), float(p99)


# --- in process ----------------------------------------------------------------------------------------
def time_calls(call, iterations: int, warmup: int = 3) -> tuple[float, float]:
    """p50 and mean milliseconds of ``call``, run in a thread as the server's request threads run it
    (on a busy machine, torch's OpenMP team spin-waits far longer when driven from the main thread)."""
    seconds: list[float] = []

    def measure():
        with torch.inference_mode():
            for _ in range(warmup):
                call()
            for _ in range(iterations):
                started = time.perf_counter()
                call()
                seconds.append(time.perf_counter() - started)
    thread = threading.Thread(target=measure)
    thread.start()
    thread.join()
    return percentiles(seconds)[0], float(np.mean(seconds) * 1000)


def in_process_rows(network: str, model_dir: Path, image: bytes, iterations: int, threads: int) -> list[list[str]]:
    torch.set_num_threads(threads)
    predictor = Predictor.load(model_dir, "cpu")
    options = Options(0.0, 200)
    limit = 64_000_000

    def full():
        prediction = predictor.predict(decode_image(image, limit, predictor.image_shape), options)
        encode(ResponseForm.PREDICTION, prediction, predictor.class_names, options)

    batch = predictor.preprocess(decode_image(image, limit, predictor.image_shape).image)
    rows = []
    for what, call in (("sagedet: decode + resize + model + JSON", full),
                       ("sagedet: model only (forward, decode boxes, NMS)", lambda: predictor.detect(batch, options))):
        log(f"  in process: {network} {what}")
        p50, mean = time_calls(call, iterations)
        rows.append([network, what, f"{p50:.1f}", f"{mean:.1f}"])
    if network in PEERS:
        name, builder = PEERS[network]
        peer = builder(weights=None, weights_backbone=None).eval()
        pixels = F.pil_to_tensor(decode_image(image, limit).image).float() / 255
        log(f"  in process: torchvision {name}")
        p50, mean = time_calls(lambda: peer([pixels]), iterations)
        rows.append([network, f"torchvision {name} eager (its transform + model + post-processing)",
                     f"{p50:.1f}", f"{mean:.1f}"])
    return rows


# --- server ------------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    def __init__(self, opt_ml: Path, workers: int, threads: int, log_file: Path,
                 environ: dict[str, str] | None = None):
        """``environ``: more variables for the server, on top of this process's."""
        self.port = free_port()
        env = dict(os.environ, **(environ or {}), SAGEDET_OPT_ML=str(opt_ml), SAGEDET_BIND_HOST="127.0.0.1",
                   SAGEMAKER_BIND_TO_PORT=str(self.port), SAGEMAKER_MODEL_SERVER_WORKERS=str(workers),
                   SAGEDET_TORCH_THREADS=str(threads))
        self.log_file = log_file
        with open(log_file, "wb") as out:
            self.process = subprocess.Popen([sys.executable, str(SERVE)], env=env, stdout=out, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited with {self.process.returncode}:\n{self.log_file.read_text()}")
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                connection.request("GET", "/ping")
                if connection.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"serve did not answer /ping within {timeout} s")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(10)


def run_load(port: int, image: bytes, clients: int, seconds: float) -> dict:
    """``clients`` threads posting ``image`` back to back for ``seconds``; a bounded, closed loop."""
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)
    headers = {"Content-Type": "image/jpeg", "Accept": "application/json"}
    timings = {}

    def client():
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        mine, errors = [], []
        start.wait()
        end = timings["end"]
        while time.perf_counter() < end:
            began = time.perf_counter()
            try:
                connection.request("POST", "/invocations", image, headers)
                response = connection.getresponse()
                body = response.read()
                if response.status != 200 or "prediction" not in json.loads(body):
                    errors.append(f"status {response.status}: {body[:200]!r}")
                else:
                    mine.append(time.perf_counter() - began)
            except (OSError, http.client.HTTPException, ValueError) as error:
                errors.append(f"{type(error).__name__}: {error}")
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        connection.close()
        with lock:
            latencies.extend(mine)
            failures.extend(errors)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    timings["end"] = time.perf_counter() + seconds
    began = time.perf_counter()
    start.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    p50, p99 = percentiles(latencies)
    return {"requests": len(latencies) + len(failures), "failures": failures, "elapsed": elapsed,
            "rps": len(latencies) / elapsed, "p50": p50, "p99": p99}


def server_configurations() -> list[tuple[int, int]]:
    """(workers, torch threads per worker): the server's default; one worker with every CPU's thread
    (the default when SAGEMAKER_MODEL_SERVER_WORKERS=1); one worker with the default's threads per
    worker (what one of the default's workers does alone)."""
    cpus = usable_cpus()
    workers = default_workers(cpus, 0)
    return list(dict.fromkeys([(workers, max(1, cpus // workers)), (1, cpus), (1, max(1, cpus // workers))]))


def server_rows(network: str, opt_ml: Path, image: bytes, args) -> tuple[list[list[str]], int]:
    rows, failed = [], 0
    results = {}
    for workers, threads in server_configurations():
        log(f"  server: {network}, {workers} worker(s) x {threads} torch thread(s), {args.clients} clients, "
            f"{args.seconds:g} s (+{args.warmup_seconds:g} s warm-up)")
        server = ServerProcess(opt_ml, workers, threads, opt_ml / f"serve-{workers}-{threads}.log")
        try:
            server.wait_ready()
            if args.warmup_seconds:
                run_load(server.port, image, args.clients, args.warmup_seconds)
            result = run_load(server.port, image, args.clients, args.seconds)
        finally:
            code = server.stop()
        if code != 0:
            result["failures"].append(f"serve exited with {code} after SIGTERM")
        for failure in result["failures"][:5]:
            log(f"    failure: {failure}")
        failed += len(result["failures"])
        results[workers, threads] = result
        rows.append([network, str(workers), str(threads), str(args.clients), f"{result['elapsed']:.1f}",
                     str(result["requests"]), str(len(result["failures"])), f"{result['rps']:.2f}",
                     f"{result['p50']:.0f}", f"{result['p99']:.0f}", ""])
    default = results[server_configurations()[0]]
    for row, result in zip(rows[1:], list(results.values())[1:]):
        row[-1] = f"{default['rps'] / max(result['rps'], 1e-9):.2f}×"
    return rows, failed


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|",
            *("| " + " | ".join(row) + " |" for row in rows)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--networks", nargs="+", default=["vgg-16", "resnet-50", "mobilenet-v3"],
                        choices=("vgg-16", "resnet-50", "mobilenet-v3"))
    parser.add_argument("--image-shape", type=int, default=300)
    parser.add_argument("--clients", type=int, default=None, help="concurrent clients (default: 2 per CPU, at least 4)")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup-seconds", type=float, default=5.0)
    parser.add_argument("--iterations", type=int, default=20, help="in-process timed calls per figure")
    parser.add_argument("--image-size", default="640x480", help="WIDTHxHEIGHT of the posted JPEG")
    parser.add_argument("--threads", type=int, default=None, help="torch threads in process (default: all CPUs)")
    args = parser.parse_args(argv)
    args.clients = args.clients or max(4, 2 * usable_cpus())
    args.threads = args.threads or usable_cpus()
    width, height = (int(v) for v in args.image_size.lower().split("x"))
    image = test_image(width, height)
    load_before = load_average()

    process_rows, load_rows, failed = [], [], 0
    with tempfile.TemporaryDirectory(prefix="sagedet-serve-load-") as work:
        for network in args.networks:
            opt_ml = Path(work) / network
            write_model(opt_ml, network, args.image_shape)
            process_rows += in_process_rows(network, opt_ml / "model", image, args.iterations, args.threads)
            rows, failures = server_rows(network, opt_ml, image, args)
            load_rows += rows
            failed += failures

    lines = [f"### Inference server load: image_shape {args.image_shape}, {NUM_CLASSES} classes, "
             f"{width}×{height} JPEG ({len(image) // 1024} KiB)", "",
             f"- command: `{shlex.join(['python', *sys.argv])}`", *machine_lines(),
             f"- load average (1, 5, 15 min) before: {load_before}; after: {load_average()}", "",
             "Server (container/serve on 127.0.0.1; closed-loop clients in a second process, kept-alive "
             "connections):", "",
             *table(["base network", "workers", "torch threads/worker", "clients", "seconds", "requests", "failed",
                     "requests/s", "p50 ms", "p99 ms", "default's requests/s ÷ this row's"], load_rows), "",
             f"In process, one image at a time, {args.threads} torch threads ({args.iterations} timed calls):", "",
             *table(["base network", "what", "p50 ms", "mean ms"], process_rows)]
    print("\n".join(lines))
    if failed:
        log(f"{failed} request(s) failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
