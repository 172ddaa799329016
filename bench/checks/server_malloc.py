"""The real server (``container/serve``, gunicorn, one worker) with sagedet's malloc setting against the
same server with glibc's defaults: two servers started one after the other on loopback, each on the same
forced inference path, then requests alternating between them, one at a time (so that the two never
compute together and the machine's drifts hit both): median latency of each.

The second server gets ``GLIBC_TUNABLES=glibc.malloc.check=0``: a glibc malloc setting that changes
nothing (0 is its default), which makes ``sagedet.allocator.tune_malloc`` leave malloc as glibc sets it.

    .venv/bin/python bench/checks/server_malloc.py [--network vgg-16] [--path winograd] [--requests 30]
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from machine import run_lines  # noqa: E402
from serve_load import ServerProcess, test_image, write_model  # noqa: E402

SETTINGS = {"sagedet's malloc setting": {}, "glibc's defaults": {"GLIBC_TUNABLES": "glibc.malloc.check=0"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--network", default="vgg-16")
    parser.add_argument("--path", default="winograd", help="SAGEDET_INFERENCE_PATH of both servers")
    parser.add_argument("--requests", type=int, default=30, help="timed requests per server")
    args = parser.parse_args()
    image = test_image(640, 480)
    servers: dict[str, ServerProcess] = {}
    with tempfile.TemporaryDirectory(prefix="sagedet-malloc-") as tmp:
        try:
            for index, (name, environ) in enumerate(SETTINGS.items()):
                opt_ml = Path(tmp) / str(index)
                opt_ml.mkdir()
                write_model(opt_ml, args.network, 300)
                servers[name] = ServerProcess(opt_ml, workers=1, threads=os.cpu_count() or 1,
                                              log_file=Path(tmp) / f"{index}.log",
                                              environ=dict(environ, SAGEDET_INFERENCE_PATH=args.path))
                servers[name].wait_ready()  # one at a time: a worker's start-up must not share the CPUs
            connections = {name: http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
                           for name, server in servers.items()}

            def post(name: str) -> float:
                started = time.perf_counter()
                connections[name].request("POST", "/invocations", body=image, headers={"Content-Type": "image/jpeg"})
                response = connections[name].getresponse()
                response.read()
                if response.status != 200:
                    raise RuntimeError(f"{name}: HTTP {response.status}")
                return time.perf_counter() - started

            for name in servers:
                for _ in range(5):
                    post(name)
            seconds: dict[str, list[float]] = {name: [] for name in servers}
            for _ in range(args.requests):
                for name in servers:
                    seconds[name].append(post(name))
            workers = {name: next(line.split("sagedet worker ", 1)[1]
                                  for line in server.log_file.read_text().splitlines() if "sagedet worker " in line)
                       for name, server in servers.items()}
        finally:
            for server in servers.values():
                server.stop()
    print("\n".join(["### The server with and without sagedet's malloc setting", "", *run_lines(),
                     f"- {args.network}, path {args.path}, 640x480 JPEG, {args.requests} requests each, "
                     "alternating", "",
                     "| malloc | median ms | worker's log line |", "|---|---|---|",
                     *(f"| {name} | {statistics.median(values) * 1000:.1f} | {workers[name]} |"
                       for name, values in seconds.items())]))


if __name__ == "__main__":
    main()
