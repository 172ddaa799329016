"""``sagedet convert`` and ``sagedet inspect`` as a user runs them."""

from __future__ import annotations

import hashlib
import json

import pytest

from convert_helpers import encoded, image_json_source
from sagedet.cli import main
from sagedet.data.recordio import RecordWriter, pack

JPEG = encoded(100, 50)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_convert_says_what_it_wrote(tmp_path, capsys):
    source = image_json_source(tmp_path)
    code, out, err = run(capsys, "convert", "--from", "imagejson", "--to", "recordio", source, tmp_path / "o" / "t.rec")
    assert code == 0 and err == ""
    assert out.startswith("5 images, ") and "3 classes (rectangle, ellipse, triangle) written as recordio: " in out
    assert all((tmp_path / "o" / name).is_file() for name in ("t.rec", "t.idx", "t.lst", "t.classes.json"))

    code, out, err = run(capsys, "convert", "--from", "recordio", "--to", "coco", tmp_path / "o" / "t.rec",
                         tmp_path / "c" / "coco.json")
    assert code == 0 and "written as coco" in out


def test_convert_prints_notes(tmp_path, capsys):
    (tmp_path / "a.jpg").write_bytes(JPEG)
    (tmp_path / "coco.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 50}],
        "annotations": [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 9, 9], "iscrowd": 1}],
        "categories": [{"id": 1, "name": "person"}]}))
    code, out, err = run(capsys, "convert", "--from", "coco", "--to", "yolo", tmp_path / "coco.json", tmp_path / "y")
    assert code == 0 and "left out 1 crowd annotation(s)" in err and "1 images, 0 objects" in out


@pytest.mark.parametrize("make, problem", [
    (lambda tmp: tmp / "missing.json", "missing.json: cannot be read"),
    (lambda tmp: (tmp / "bad.json").write_text("[]") and tmp / "bad.json", "a COCO file is a JSON object"),
])
def test_bad_input_is_a_message_not_a_traceback(tmp_path, capsys, make, problem):
    code, out, err = run(capsys, "convert", "--from", "coco", "--to", "recordio", make(tmp_path), tmp_path / "x.rec")
    assert code == 1 and out == "" and err.startswith("sagedet: ") and problem in err and "Traceback" not in err
    assert not (tmp_path / "x.rec").exists()


def test_convert_never_overwrites(tmp_path, capsys):
    source = image_json_source(tmp_path)
    (tmp_path / "t.rec").write_bytes(b"precious")
    code, _, err = run(capsys, "convert", "--from", "imagejson", "--to", "recordio", source, tmp_path / "t.rec")
    assert code == 1 and "t.rec exists already" in err and (tmp_path / "t.rec").read_bytes() == b"precious"
    code, _, err = run(capsys, "convert", "--from", "imagejson", "--to", "imagejson", source, source)
    assert code == 1 and "the source and the destination are the same" in err


def test_convert_help_lists_the_formats(capsys):
    with pytest.raises(SystemExit):
        main(["convert", "--help"])
    out = capsys.readouterr().out
    for name in ("coco", "voc", "yolo", "manifest", "imagejson", "recordio", "--s3-prefix", "--label-header"):
        assert name in out


def write_rec(path, *records):
    with open(path, "wb") as out:
        writer = RecordWriter(out)
        return [writer.write(pack(label, image, id=i)) for i, (label, image) in enumerate(records)]


def test_inspect_prints_one_json_line_per_record(tmp_path, capsys):
    png = encoded(40, 30, "PNG")
    offsets = write_rec(tmp_path / "a.rec", ([4, 5, 100, 50, 1, 0.1, 0.2, 0.5, 0.6], JPEG), ([2, 5], png))
    code, out, err = run(capsys, "inspect", tmp_path / "a.rec")
    assert code == 0 and err == ""
    first, second = (json.loads(line) for line in out.splitlines())
    assert first == {"index": 0, "offset": 0, "id": 0, "id2": 0,
                     "label": [4.0, 5.0, 100.0, 50.0, 1.0, 0.1, 0.2, 0.5, 0.6],
                     "format": "JPEG", "width": 100, "height": 50, "bytes": len(JPEG),
                     "sha256": hashlib.sha256(JPEG).hexdigest(),
                     "objects": [{"class_id": 1, "xmin": 0.1, "ymin": 0.2, "xmax": 0.5, "ymax": 0.6}]}
    assert (second["index"], second["offset"], second["format"], second["width"], second["objects"]) == (
        1, offsets[1], "PNG", 40, [])


def test_inspect_marks_bad_records_and_goes_on(tmp_path, capsys):
    offsets = write_rec(tmp_path / "a.rec", (3.0, JPEG), ([2, 5, 0, 0.5, 0.1, 0.2, 0.2], b"GIF?"),
                        ([2, 5, 2, 0, 0, 1, 1], JPEG))
    code, out, err = run(capsys, "inspect", tmp_path / "a.rec", "--num-classes", "2")
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 1 and "3 record(s) of" in err
    assert lines[0]["label"] == [3.0] and "has a scalar label (3)" in lines[0]["error"]
    assert lines[1]["format"] is None and lines[1]["offset"] == offsets[1]
    assert lines[1]["error"].startswith("object 0 has box [0.5, 0.1, 0.2, 0.2]")
    assert "class_id 2; allowed: whole numbers from 0 to 1" in lines[2]["error"] and "objects" not in lines[2]


def test_inspect_limit_and_broken_framing(tmp_path, capsys):
    offsets = write_rec(tmp_path / "a.rec", ([2, 5], JPEG), ([2, 5], JPEG), ([2, 5], JPEG))
    code, out, _ = run(capsys, "inspect", tmp_path / "a.rec", "--limit", "2")
    assert code == 0 and [json.loads(line)["index"] for line in out.splitlines()] == [0, 1]
    (tmp_path / "a.rec").write_bytes((tmp_path / "a.rec").read_bytes()[:offsets[2] + 5])
    code, out, err = run(capsys, "inspect", tmp_path / "a.rec")
    assert code == 1 and len(out.splitlines()) == 2
    assert f"a.rec: record 2 (byte offset {offsets[2]}" in err and "truncated" in err and "Traceback" not in err
