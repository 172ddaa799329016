"""Starting and stopping the real ``container/serve``: SIGTERM with requests in flight, refusing to start."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image
from serve_harness import SERVE, Server, encode, free_port, write_model


def big_png(width: int = 6000, height: int = 6000) -> bytes:
    """36 megapixels in 0.3 MB: a request that takes a while to decode and resize."""
    gradient = Image.linear_gradient("L")
    bands = [gradient.resize((width, height)), gradient.rotate(90).resize((width, height)),
             gradient.resize((width, height))]
    return encode(Image.merge("RGB", bands), "PNG", compress_level=1)


def test_sigterm_lets_requests_in_flight_finish_then_exits_0(tmp_path: Path):
    write_model(tmp_path / "model")
    server = Server(tmp_path, tmp_path / "serve.log", SAGEMAKER_MODEL_SERVER_WORKERS="1").start()
    image = big_png()
    # One request is held in flight by construction: its body is half sent at SIGTERM and finished
    # after it (a fast machine answered three whole requests before a timed signal: CI, stop 23).
    uploading = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        uploading.putrequest("POST", "/invocations")
        uploading.putheader("Content-Type", "image/png")
        uploading.putheader("Content-Length", str(len(image)))
        uploading.endheaders()
        uploading.send(image[:len(image) // 2])
        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(server.invoke, image) for _ in range(2)]
            time.sleep(0.8)  # every connection accepted by the worker
            signalled = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            time.sleep(0.5)  # the worker is stopping: it accepts nothing new
            uploading.send(image[len(image) // 2:])
            answer = uploading.getresponse()
            held = answer.status, json.loads(answer.read())
            results = [future.result() for future in futures]
        code = server.process.wait(30)
        stopped = time.monotonic()
    finally:
        uploading.close()
        server.stop()
    log = server.output()
    assert "Handling signal: term" in log and "Shutting down: Master" in log
    assert held[0] == 200 and held[1]["prediction"], (held, log)
    assert [response.status for response in results] == [200] * 2, log
    assert all(response.json()["prediction"] for response in results)
    assert code == 0, log
    assert stopped - signalled < 25  # SageMaker sends SIGKILL 30 s after SIGTERM
    with pytest.raises(OSError):
        server.request("GET", "/ping", timeout=2)


def run_serve(opt_ml: Path, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    environ = {"SAGEDET_OPT_ML": str(opt_ml), "SAGEDET_BIND_HOST": "127.0.0.1",
               "SAGEMAKER_BIND_TO_PORT": str(free_port()), "PATH": "/usr/bin:/bin",
               **{k: os.environ[k] for k in ["PYTHONPATH"] if k in os.environ}, **env}  # the sagedet under test
    return subprocess.run([sys.executable, str(SERVE)], env=environ, capture_output=True, text=True, timeout=timeout)


def test_bad_environment_is_refused_naming_each_variable(tmp_path: Path):
    write_model(tmp_path / "model")
    result = run_serve(tmp_path, SAGEMAKER_BIND_TO_PORT="http", SAGEMAKER_MODEL_SERVER_WORKERS="0",
                       SAGEMAKER_MAX_PAYLOAD_IN_MB="6.5", SAGEDET_SCORE_THRESHOLD="2")
    assert result.returncode == 1
    assert "sagedet serve: invalid inference server environment:" in result.stderr
    assert "SAGEMAKER_BIND_TO_PORT='http': expected an integer from 1 to 65535" in result.stderr
    assert "SAGEMAKER_MODEL_SERVER_WORKERS='0': expected an integer >= 1" in result.stderr
    assert "SAGEMAKER_MAX_PAYLOAD_IN_MB='6.5': expected an integer >= 0" in result.stderr
    assert "SAGEDET_SCORE_THRESHOLD='2': expected a number from 0 to 1" in result.stderr


def test_missing_model_stops_the_server(tmp_path: Path):
    (tmp_path / "model").mkdir()
    result = run_serve(tmp_path, SAGEMAKER_MODEL_SERVER_WORKERS="2")
    assert result.returncode == 4  # gunicorn's "App failed to load"
    assert (f"sagedet serve: cannot load the model: {tmp_path / 'model' / 'model.safetensors'} is missing: "
            "a sagedet model folder holds model.safetensors and model.json") in result.stderr


def test_model_that_does_not_load_stops_the_server(tmp_path: Path):
    write_model(tmp_path / "model")
    metadata_file = tmp_path / "model" / "model.json"
    metadata = json.loads(metadata_file.read_text())
    metadata_file.write_text(json.dumps({**metadata, "num_classes": 5}))
    result = run_serve(tmp_path, SAGEMAKER_MODEL_SERVER_WORKERS="1")
    assert result.returncode == 4  # gunicorn's "App failed to load"
    assert "sagedet serve: cannot load the model:" in result.stderr
    assert "the weights do not fit a mobilenet-v3 SSD with 5 classes at 64 px" in result.stderr


def test_a_model_onnx_from_another_model_is_left_out_or_stops_a_server_that_asks_for_it(tmp_path: Path):
    """A model.onnx exported at another image side: ONNX Runtime cannot take the model's images. Under
    auto the worker leaves the path out, says why and serves; asked for onnxruntime, the server stops."""
    from sagedet.export.onnx import to_bytes
    from sagedet.model.saved import load_detector

    write_model(tmp_path / "model", image_shape=96)
    write_model(tmp_path / "previous", image_shape=64, seed=1)
    (tmp_path / "model" / "model.onnx").write_bytes(to_bytes(load_detector(tmp_path / "previous")[0]))
    onnx_file = tmp_path / "model" / "model.onnx"
    result = run_serve(tmp_path, SAGEMAKER_MODEL_SERVER_WORKERS="1", SAGEDET_INFERENCE_PATH="onnxruntime")
    assert result.returncode == 4, result.stderr  # gunicorn's "App failed to load"
    assert (f"sagedet serve: cannot load the model: SAGEDET_INFERENCE_PATH=onnxruntime: {onnx_file} takes images of "
            f"shape (batch, 3, 64, 64)") in result.stderr
    server = Server(tmp_path, tmp_path / "serve.log", SAGEMAKER_MODEL_SERVER_WORKERS="1").start()
    try:
        assert server.invoke(encode(Image.new("RGB", (80, 60)))).status == 200
    finally:
        server.stop()
    assert f"the onnxruntime inference path could not be built (ModelError: {onnx_file} takes images" in server.output()


def test_a_bad_nms_threshold_in_model_json_stops_the_server_naming_it(tmp_path: Path):
    write_model(tmp_path / "model")
    metadata_file = tmp_path / "model" / "model.json"
    metadata_file.write_text(json.dumps({**json.loads(metadata_file.read_text()), "nms_threshold": "abc"}))
    result = run_serve(tmp_path, SAGEMAKER_MODEL_SERVER_WORKERS="1")
    assert result.returncode == 4, result.stderr  # gunicorn's "App failed to load", not 3 (a worker's traceback)
    assert (f"sagedet serve: cannot load the model: {metadata_file}: nms_threshold 'abc': expected a number in "
            "(0, 1]") in result.stderr
    assert "Traceback" not in result.stderr


def test_a_precision_the_cpu_cannot_run_stops_the_server_naming_it(tmp_path: Path):
    write_model(tmp_path / "model")
    result = run_serve(tmp_path, SAGEMAKER_MODEL_SERVER_WORKERS="1", SAGEDET_DEVICE="cpu", SAGEDET_PRECISION="fp16")
    assert result.returncode == 4, result.stderr  # gunicorn's "App failed to load"
    assert ("sagedet serve: cannot load the model: SAGEDET_PRECISION=fp16 needs a CUDA device; on cpu use bf16 (CPUs "
            "with AVX512_BF16 or AMX run it natively) or float32") in result.stderr
    assert "Traceback" not in result.stderr
    result = run_serve(tmp_path, SAGEDET_PRECISION="double")
    assert result.returncode == 1  # the environment, refused before gunicorn starts
    assert "SAGEDET_PRECISION='double': expected one of auto, float32, bf16, fp16" in result.stderr
