"""Text files that are not UTF-8 (a Latin-1 manifest, a binary .idx, a Windows-1252 class list) fail
with a DataError naming the file, the line and the byte, and saying the file must be UTF-8 text: not
with a bare UnicodeDecodeError."""

from __future__ import annotations

import json

import pytest

from rec_bytes import LABEL_A2, image_record, write_rec
from sagedet.data.convert.dataset import Options
from sagedet.data.convert.formats import read
from sagedet.data.manifest import ManifestSource
from sagedet.data.recordio import read_index
from sagedet.data.textfile import read_text, text_lines
from sagedet.errors import DataError
from PIL import Image

LATIN_1 = "café".encode("latin-1")  # byte 0xe9, not UTF-8


def write_jpeg(path, width=40, height=30):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (200, 40, 40)).save(path, "JPEG")
    return path


def manifest_line(ref="s3://b/a.jpg") -> bytes:
    return json.dumps({"source-ref": ref, "bb": {"image_size": [{"width": 40, "height": 30, "depth": 3}],
                                                 "annotations": []}}).encode()


def test_text_lines_and_read_text_name_the_line_and_byte(tmp_path):
    path = tmp_path / "x.txt"
    path.write_bytes(b"first\nsecond " + LATIN_1 + b"\n")
    expected = (f"{path}: line 2: byte 0xe9 at byte offset 16 is not UTF-8; a thing must be UTF-8 text")
    with pytest.raises(DataError, match="^" + expected.replace(".", r"\.") + "$"):
        list(text_lines(path, "a thing"))
    with pytest.raises(DataError) as caught:
        read_text(path, "a thing", name="channel/x.txt")
    assert str(caught.value) == expected.replace(str(path), "channel/x.txt")
    with pytest.raises(DataError, match=r"missing\.txt: cannot be read \(No such file or directory\)"):
        read_text(tmp_path / "missing.txt", "a thing")


def test_a_binary_idx(tmp_path):
    path = tmp_path / "a.idx"
    path.write_bytes(b"0\t0\n\xff\xfe garbage\n")
    with pytest.raises(DataError) as caught:
        read_index(path)
    assert str(caught.value) == (f"{path}: line 2: byte 0xff at byte offset 4 is not UTF-8; an .idx file "
                                 "('key<TAB>byte offset' per line) must be UTF-8 text")


def test_a_latin_1_manifest_in_file_mode(tmp_path):
    root = tmp_path / "train"
    write_jpeg(root / "a.jpg")
    (root / "x.manifest").write_bytes(manifest_line() + b"\n" + LATIN_1 + b"\n")
    with pytest.raises(DataError) as caught:
        ManifestSource(root, 2, "train")
    assert (f"train/x.manifest: line 2: byte 0xe9 at byte offset {len(manifest_line()) + 4} is not UTF-8; "
            "a manifest (one JSON object per line) must be UTF-8 text") in str(caught.value)


def test_a_latin_1_manifest_to_convert(tmp_path):
    write_jpeg(tmp_path / "a.jpg")
    source = tmp_path / "x.manifest"
    source.write_bytes(manifest_line() + b"\n" + LATIN_1 + b"\n")
    with pytest.raises(DataError, match=r"x\.manifest: line 2: byte 0xe9 .* is not UTF-8; a manifest"):
        read("manifest", source, Options())


def test_a_windows_1252_class_list(tmp_path):
    write_jpeg(tmp_path / "yolo" / "images" / "a.jpg")
    (tmp_path / "yolo" / "classes.txt").write_bytes(b"dog\n" + LATIN_1 + b"\n")
    with pytest.raises(DataError) as caught:
        read("yolo", tmp_path / "yolo", Options())
    assert str(caught.value) == (f"{tmp_path / 'yolo' / 'classes.txt'}: line 2: byte 0xe9 at byte offset 7 is not "
                                 "UTF-8; a class list (one class name per line) must be UTF-8 text")


def test_a_yolo_label_file_that_is_not_utf_8(tmp_path):
    write_jpeg(tmp_path / "yolo" / "images" / "a.jpg")
    (tmp_path / "yolo" / "labels").mkdir()
    (tmp_path / "yolo" / "labels" / "a.txt").write_bytes(b"0 0.5 0.5 0.2 0.2 # " + LATIN_1 + b"\n")
    with pytest.raises(DataError, match=r"labels/a\.txt: line 1: byte 0xe9 at byte offset 23 is not UTF-8; a YOLO "
                                        r"label file \('class_id center_x center_y width height' per line\) must"):
        read("yolo", tmp_path / "yolo", Options())


def test_an_im2rec_lst_that_is_not_utf_8(tmp_path):
    rec = tmp_path / "data.rec"
    write_rec(rec, image_record(LABEL_A2))
    rec.with_suffix(".lst").write_bytes(b"0\t2\t5\timages/" + LATIN_1 + b".jpg\n")
    with pytest.raises(DataError, match=r"data\.lst: line 1: byte 0xe9 at byte offset 16 is not UTF-8; an im2rec "
                                        r"\.lst file"):
        read("recordio", rec, Options())
