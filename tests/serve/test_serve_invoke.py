"""``sagedet invoke``: images sent to a running server, its answers written as JSON and drawn as PNG."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from serve_harness import Server, encode, scene, write_model

from sagedet.cli import main


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    opt_ml = tmp_path_factory.mktemp("invoke") / "opt_ml"
    write_model(opt_ml / "model")
    started = Server(opt_ml, opt_ml.parent / "serve.log", SAGEMAKER_MODEL_SERVER_WORKERS="1").start()
    yield started
    started.stop()


def test_invoke_writes_the_servers_answers_and_drawings(server, tmp_path: Path, capsys):
    images = []
    for index, fmt in enumerate(("JPEG", "PNG")):
        path = tmp_path / f"image{index}.{fmt.lower().replace('jpeg', 'jpg')}"
        path.write_bytes(encode(scene(150 + 10 * index, 100, seed=index), fmt))
        images.append(path)
    output = tmp_path / "out"
    code = main(["invoke", *map(str, images), "--endpoint", f"http://127.0.0.1:{server.port}",
                 "--output", str(output), "--draw-min-score", "0"])
    assert code == 0, capsys.readouterr()
    for path in images:
        written = json.loads((output / f"{path.stem}.json").read_text())
        direct = server.request("POST", "/invocations", path.read_bytes(), {
            "Content-Type": "image/jpeg" if path.suffix == ".jpg" else "image/png",
            "Accept": "application/json;verbose=1"}).json()
        assert written == direct and written["detections"]
        with Image.open(output / f"{path.stem}.png") as drawn, Image.open(path) as original:
            assert drawn.format == "PNG" and drawn.size == original.size
            assert drawn.convert("RGB").tobytes() != original.convert("RGB").tobytes()  # boxes were drawn


def test_invoke_reports_the_servers_refusal_with_the_file(server, tmp_path: Path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    code = main(["invoke", str(text), "--endpoint", f"http://127.0.0.1:{server.port}", "--output", str(tmp_path)])
    assert code == 1
    err = capsys.readouterr().err
    assert "notes.txt" in err and "415" in err
