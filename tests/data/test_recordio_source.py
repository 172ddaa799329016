"""The File-mode RecordIO training source and the Pipe-mode stream (sagedet.data.recordio_source) on
hand-built .rec files."""

from __future__ import annotations

import io
import logging

import numpy as np
import pytest

from rec_bytes import LABEL_A2, LABEL_A4, LABEL_B6, MAGIC_BYTES, encoded_image, image_record, part, rec_file, write_rec
from sagedet.data.recordio_source import RecordIOSource, stream_samples
from sagedet.errors import DataError

IMAGES = [encoded_image(color=(i * 40, 0, 0)) for i in range(3)]
# the second image holds the magic word at an aligned offset of its record: written in parts
RECORDS = [image_record(LABEL_A2, IMAGES[0], id=0), image_record(LABEL_A4, IMAGES[1] + MAGIC_BYTES, id=1),
           image_record(LABEL_B6, IMAGES[2], id=2)]


def split_record() -> bytes:
    record = RECORDS[1]
    at = len(record) - 4
    assert at % 4 == 0 and record[at:] == MAGIC_BYTES, "the image's length is a multiple of 4"
    return part(record[:at], 1) + part(b"", 3)


def load(root, num_classes=3, label_width=350) -> RecordIOSource:
    return RecordIOSource(root, num_classes, label_width, "train")


def load_error(root, num_classes=3) -> str:
    with pytest.raises(DataError) as caught:
        load(root, num_classes)
    return str(caught.value)


@pytest.fixture(params=[False, True], ids=["scanned", "with-idx"])
def with_index(request) -> bool:
    return request.param


def write_with_split_record(path) -> list[int]:
    """RECORDS as ``path``, the second split in parts; their offsets."""
    path.parent.mkdir()
    path.write_bytes(part(RECORDS[0]) + split_record() + part(RECORDS[2]))
    return [0, len(part(RECORDS[0])), len(part(RECORDS[0])) + len(split_record())]


def test_reads_records_with_or_without_idx(tmp_path, with_index):
    path = tmp_path / "train" / "data.rec"
    starts = write_with_split_record(path)
    if with_index:
        path.with_suffix(".idx").write_text("".join(f"{k}\t{o}\n" for k, o in enumerate(starts)))

    source = load(tmp_path / "train")

    assert len(source) == 3 and source.class_names == {}
    for i in range(3):
        sample = source.read(i)
        assert source.name(i) == sample.name == f"train/data.rec: record {i} (byte offset {starts[i]})"
        assert sample.image_bytes == IMAGES[i] + (MAGIC_BYTES if i == 1 else b"")
        np.testing.assert_allclose(sample.objects.boxes, [[0.1, 0.2, 0.5, 0.6], [0.3, 0.35, 0.9, 0.95]], atol=1e-7)
        assert sample.objects.labels.tolist() == [0, 2]


def test_reads_every_rec_file_of_the_channel_in_path_order(tmp_path):
    root = tmp_path / "train"
    write_rec(root / "b.rec", RECORDS[2])
    write_rec(root / "a" / "z.REC", RECORDS[0], RECORDS[0], index=True)
    write_rec(root / ".hidden" / "c.rec", image_record([1, 5]))  # would be an error if it were read
    write_rec(root / "notes.txt", image_record([1, 5]))
    source = load(root)
    assert [source.name(i) for i in range(len(source))] == [
        "train/a/z.REC: record 0 (byte offset 0)", f"train/a/z.REC: record 1 (byte offset {len(part(RECORDS[0]))})",
        "train/b.rec: record 0 (byte offset 0)"]
    assert source.read(2).image_bytes == IMAGES[2]


def test_a_channel_without_rec_files(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "a.jpg").write_bytes(IMAGES[0])
    message = load_error(tmp_path / "train")
    assert "The train channel" in message and "holds no .rec file" in message


def test_empty_rec_files(tmp_path):
    write_rec(tmp_path / "train" / "a.rec")
    assert "hold no records" in load_error(tmp_path / "train")


def test_every_problem_of_every_file_is_reported_at_once(tmp_path, with_index):
    root = tmp_path / "train"
    bad_label = write_rec(root / "a.rec", RECORDS[0], image_record([2, 5, 9, 0.1, 0.1, 0.2, 0.2]),
                          image_record([2, 5, 0, 0.5, 0.1, 0.4, 0.2]), index=with_index)
    truncated = rec_file(RECORDS[0], RECORDS[2])[:-5]
    (root / "b.rec").write_bytes(truncated)
    write_rec(root / "c.rec", RECORDS[0])
    (root / "d.rec").write_bytes(b"not a rec file at all")

    message = load_error(root)

    assert message.startswith("4 problem(s) in the train data:\n")
    assert f"train/a.rec: record 1 (byte offset {bad_label[1]}): object 0 has class_id 9" in message
    assert f"train/a.rec: record 2 (byte offset {bad_label[2]}): object 0 has box" in message
    assert f"train/b.rec: record 1 (byte offset {len(part(RECORDS[0]))}" in message and "truncated" in message
    assert "train/d.rec: record 0 (byte offset 0" in message and "bad magic" in message
    assert "c.rec" not in message


def load_warning(root, caplog, records: int) -> str:
    """The one warning that loading ``root`` (whose .rec files hold ``records`` records) logs."""
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sagedet.data.recordio_source"):
        source = load(root)
    assert len(source) == records
    assert [s.name for s in map(source.read, range(len(source)))] == [source.name(i) for i in range(records)]
    assert len(caplog.records) == 1, caplog.text
    return caplog.records[0].getMessage()


IGNORED = ". The .idx file is ignored: all {n} records of train/a.rec are read, found by walking it."


@pytest.mark.parametrize(("lines", "problem"), [
    (lambda o: f"0\t{o[0]}\n1\t{o[1]}\n", "it lists 2 of the 4 records (the first one missing is at byte {o[2]})"),
    (lambda o: "".join(f"{k}\t0\n" for k in range(4)),
     "3 entries repeat an earlier entry's byte offset (key 1 at byte 0, key 2 at byte 0, key 3 at byte 0); it lists "
     "1 of the 4 records (the first one missing is at byte {o[1]})"),
    (lambda o: "".join(f"{k}\t{v}\n" for k, v in enumerate(o)) + f"4\t{o[3]}\n",
     "1 entry repeats an earlier entry's byte offset (key 4 at byte {o[3]})"),
    (lambda o: f"0\t0\n1\t12\n2\t{o[2]}\n3\t100000\n",
     "2 of its 4 entries point where no record starts (key 1 at byte 12, key 3 at byte 100000); it lists 2 of the 4 "
     "records (the first one missing is at byte {o[1]})"),
    (lambda o: "0\t0\n1 x\n", "line 2: '1 x' is not 'key<TAB>byte offset'"),
], ids=["stale", "one-offset-for-all", "a-repeated-line", "not-at-record-starts", "malformed"])
def test_an_idx_that_disagrees_with_the_rec_is_named_and_ignored(tmp_path, caplog, lines, problem):
    path = tmp_path / "train" / "a.rec"
    starts = write_rec(path, RECORDS[0], RECORDS[2], RECORDS[0], RECORDS[2])
    path.with_suffix(".idx").write_text(lines(starts))
    message = load_warning(tmp_path / "train", caplog, 4)
    assert message == (f"warning: {path.with_suffix('.idx')} does not match train/a.rec: {problem.format(o=starts)}"
                       + IGNORED.format(n=4))


def test_a_binary_idx_is_named_and_ignored(tmp_path, caplog):
    path = tmp_path / "train" / "a.rec"
    write_rec(path, RECORDS[0], RECORDS[2])
    path.with_suffix(".idx").write_bytes(b"0\t0\n\xff\xfe\n")
    assert (f"{path.with_suffix('.idx')} does not match train/a.rec: line 2: byte 0xff at byte offset 4 is not UTF-8; "
            "an .idx file") in load_warning(tmp_path / "train", caplog, 2)


def test_an_idx_that_lists_every_record_once_in_any_order_is_quiet(tmp_path, caplog):
    path = tmp_path / "train" / "a.rec"
    starts = write_with_split_record(path)
    path.with_suffix(".idx").write_text(f"7\t{starts[2]}\n7\t{starts[0]}\n3\t{starts[1]}\n")  # keys are not used
    with caplog.at_level(logging.WARNING):
        source = load(tmp_path / "train")
    assert caplog.records == []
    names = [f"train/a.rec: record {i} (byte offset {offset})" for i, offset in enumerate(starts)]
    assert [source.name(i) for i in range(3)] == names


@pytest.mark.parametrize("cut", [8 + 24 + 8, 8 + 24 + 9, 8 + 24 + 4 * 12 + 10], ids=["in-label", "in-label-odd",
                                                                                     "in-image"])
def test_a_truncated_file_with_an_idx_is_reported_when_indexing(tmp_path, cut):
    path = tmp_path / "train" / "a.rec"
    starts = write_rec(path, RECORDS[0], RECORDS[0], index=True)
    path.write_bytes(path.read_bytes()[:starts[1] + cut])
    message = load_error(tmp_path / "train")
    assert f"train/a.rec: record 1 (byte offset {starts[1]}" in message and "truncated" in message


def test_stream_samples_reads_a_stream_one_record_at_a_time():
    data = part(RECORDS[0]) + split_record() + part(RECORDS[2])
    samples = list(stream_samples(io.BytesIO(data), "train_0", 3, 350))
    assert [s.name for s in samples] == ["train_0: record 0 (byte offset 0)",
                                         f"train_0: record 1 (byte offset {len(part(RECORDS[0]))})",
                                         f"train_0: record 2 (byte offset {len(part(RECORDS[0]) + split_record())})"]
    assert [s.image_bytes for s in samples] == [IMAGES[0], IMAGES[1] + MAGIC_BYTES, IMAGES[2]]
    assert all(s.objects.labels.tolist() == [0, 2] for s in samples)


def test_stream_samples_stops_at_broken_framing():
    data = rec_file(RECORDS[0], RECORDS[2])[:-3]
    samples = stream_samples(io.BytesIO(data), "train_0", 3, 350)
    assert next(samples).name == "train_0: record 0 (byte offset 0)"
    with pytest.raises(DataError, match=r"train_0: record 1 \(byte offset \d+, at byte \d+\): the file ends inside"):
        next(samples)


def test_class_names_come_from_a_classes_json_beside_the_rec(tmp_path):
    root = tmp_path / "train"
    write_rec(root / "data.rec", image_record(LABEL_A2))
    assert load(root).class_names == {}
    (root / "classes.json").write_text('[{"class_id": 0, "name": "cat"}, {"class_id": 2, "name": "dog"}]')
    assert load(root).class_names == {0: "cat", 2: "dog"}
    (root / "data.classes.json").write_text('[{"class_id": 0, "name": "lynx"}]')  # NAME.classes.json first
    assert load(root).class_names == {0: "lynx"}
    (root / "data.classes.json").write_text('[{"class_id": 5, "name": "whale"}]')
    assert "class_id 5 is not an integer in [0, 3)" in load_error(root)
