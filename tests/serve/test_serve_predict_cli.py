"""``sagedet predict IMAGE... --model DIR [--draw DIR]``: the server's answers for local files."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from serve_harness import CLASS_NAMES, encode, one_torch_thread, scene, write_model  # noqa: F401 (autouse fixture)

from sagedet.cli import main
from sagedet.serve.codecs import Options, decode_image
from sagedet.serve.predictor import Predictor


def sagedet(capsys, *args: str):
    """``sagedet ARGS`` in this process (the model loads in a fraction of a subprocess's time)."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_predict_prints_the_servers_answer_and_draws_pngs(tmp_path: Path, capsys):
    write_model(tmp_path / "model")
    images = tmp_path / "images"
    images.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 8
    (images / "rotated.jpg").write_bytes(encode(scene(90, 60, seed=1), "JPEG", quality=95, exif=exif.tobytes()))
    (images / "plain.png").write_bytes(encode(scene(100, 80, seed=2), "PNG"))
    (images / "broken.jpg").write_bytes(b"not an image")
    drawn = tmp_path / "drawn"
    with tarfile.open(tmp_path / "model.tar.gz", "w:gz") as archive:
        for file in (tmp_path / "model").iterdir():
            archive.add(file, arcname=file.name)

    code, out, err = sagedet(capsys, "predict", str(images / "rotated.jpg"), str(images / "plain.png"),
                             str(images / "broken.jpg"), "--model", str(tmp_path / "model.tar.gz"),
                             "--format", "verbose", "--threshold", "0.2", "--max-detections", "20",
                             "--draw", str(drawn), "--draw-min-score", "0")
    assert code == 1  # one image failed, the others were answered
    assert f"sagedet predict: {images / 'broken.jpg'}: the request body is not a JPEG or PNG image" in err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["image"] for line in lines] == [str(images / "rotated.jpg"), str(images / "plain.png")]
    assert lines[0]["image_size"] == {"width": 60, "height": 90, "depth": 3}
    assert all(0 < len(line["detections"]) <= 20 for line in lines)
    assert all(d["score"] >= 0.2 and d["class_name"] == CLASS_NAMES[d["class_id"]]
               for line in lines for d in line["detections"])

    predictor = Predictor.load(tmp_path / "model")
    expected = predictor.predict(decode_image((images / "plain.png").read_bytes(), 10**8, 64), Options(0.2, 20))
    assert [d["score"] for d in lines[1]["detections"]] == [round(s, 6) for s in expected.scores]

    assert sorted(p.name for p in drawn.iterdir()) == ["plain.png", "rotated.png"]
    for name, size in (("rotated.png", (60, 90)), ("plain.png", (100, 80))):
        with Image.open(drawn / name) as image:
            assert image.format == "PNG" and image.size == size
            original = Image.open(images / ("plain.png" if name == "plain.png" else "rotated.jpg"))
            if name == "rotated.png":
                original = original.transpose(Image.Transpose.ROTATE_90)
            assert not np.array_equal(np.asarray(image.convert("RGB")), np.asarray(original.convert("RGB")))


def test_predict_refuses_bad_options(tmp_path: Path, capsys):
    write_model(tmp_path / "model")
    code, _, err = sagedet(capsys, "predict", "x.png", "--model", str(tmp_path / "model"), "--threshold", "3")
    assert code == 1 and err.strip() == "sagedet: --threshold 3.0: expected a number from 0 to 1"
    code, _, err = sagedet(capsys, "predict", "x.png", "--model", str(tmp_path / "nowhere"))
    assert code == 1 and err.strip() == f"sagedet: --model {tmp_path / 'nowhere'}: no such folder or model archive"
    code, _, err = sagedet(capsys, "predict", "x.png", "--model", str(tmp_path / "model"), "--device", "tpu")
    assert code == 1 and err.strip() == "sagedet: --device 'tpu': expected auto, cpu, cuda or cuda:N"
    code, _, err = sagedet(capsys, "predict", "x.png", "--model", str(tmp_path / "model"), "--device", "cuda:99")
    gpus = torch.cuda.device_count()
    expected = (f"this machine has {gpus} GPU(s), cuda:0 to cuda:{gpus - 1}" if gpus
                else "CUDA is not available on this machine")
    assert code == 1 and err.strip() == f"sagedet: --device cuda:99: {expected}"
    code, _, err = sagedet(capsys, "predict", "x.png", "--model", str(tmp_path / "model"), "--precision", "half")
    assert code == 1 and err.strip() == "sagedet: --precision 'half': expected one of auto, float32, bf16, fp16"
    code, _, err = sagedet(capsys, "predict", "x.png", "--model", str(tmp_path / "model"), "--device", "cpu",
                           "--precision", "fp16")
    assert code == 1 and err.strip() == ("sagedet: --precision=fp16 needs a CUDA device; on cpu use bf16 (CPUs with "
                                         "AVX512_BF16 or AMX run it natively) or float32")


def test_predict_under_bf16_gives_the_float32_detections_within_the_tolerance(tmp_path: Path, capsys):
    from trained_like import write_model as write_trained_like

    from sagedet.serve.engines import PRECISION_TOLERANCE

    write_trained_like(tmp_path / "model", "resnet-50", 257)
    (tmp_path / "scene.png").write_bytes(encode(scene(120, 90, seed=4), "PNG"))
    answers = {}
    for precision, most in (("float32", "200"), ("bf16", "10")):
        code, out, err = sagedet(capsys, "predict", str(tmp_path / "scene.png"), "--model", str(tmp_path / "model"),
                                 "--device", "cpu", "--precision", precision, "--max-detections", most)
        assert code == 0, err
        answers[precision] = json.loads(out)["prediction"]
    assert len(answers["bf16"]) == 10 and answers["bf16"] != answers["float32"][:10]  # computed otherwise ...
    for row in answers["bf16"]:  # ... each detection among the float32 model's, within the tolerance
        assert any(row[0] == other[0] and all(abs(a - b) <= PRECISION_TOLERANCE for a, b in zip(row[1:], other[1:]))
                   for other in answers["float32"]), (row, answers["float32"])
