"""MXNet RecordIO framing, image records and .idx files (sagedet.data.recordio) against bytes built
by hand as dmlc-core and mxnet.recordio write them."""

from __future__ import annotations

import io
import random
import struct

import numpy as np
import pytest

from rec_bytes import (LABEL_A2, LABEL_A4, LABEL_B6, MAGIC_BYTES, image_record, offsets, part, rec_file,
                       scalar_record)
from sagedet.data.recordio import (HEADER, MAGIC, Record, RecordReader, RecordWriter, frame, pack, read_index,
                                   read_record_at, scan_offsets, unpack)
from sagedet.errors import DataError


def write_records(*records: bytes, keys=None) -> tuple[bytes, str]:
    """What our writer makes of ``records``: the .rec bytes and the .idx text."""
    out, index = io.BytesIO(), io.StringIO()
    writer = RecordWriter(out, index)
    for i, record in enumerate(records):
        writer.write(record, None if keys is None else keys[i])
    return out.getvalue(), index.getvalue()


def read_all(data: bytes, name: str = "x.rec") -> list[Record]:
    return list(RecordReader(io.BytesIO(data), name))


def read_error(data: bytes, name: str = "x.rec") -> str:
    with pytest.raises(DataError) as caught:
        read_all(data, name)
    return str(caught.value)


def test_the_constants_are_dmlc_cores():
    assert MAGIC == 0xCED7230A and struct.pack("<I", MAGIC) == MAGIC_BYTES
    assert HEADER.format == "<IfQQ" and HEADER.size == 24


@pytest.mark.parametrize("label", [LABEL_A2, LABEL_A4, LABEL_B6], ids=["A2-B5", "A4-width-height", "B6"])
def test_pack_and_frame_give_the_bytes_mxnet_writes(label):
    record = image_record(label, b"\xff\xd8jpeg-bytes", id=7, id2=3)
    assert pack(np.array(label, np.float32), b"\xff\xd8jpeg-bytes", id=7, id2=3) == record
    assert pack(label, b"\xff\xd8jpeg-bytes", id=7, id2=3) == record
    assert frame(record) == part(record)


def test_a_scalar_label_packs_into_the_header():
    assert pack(3.0, b"IMG", id=9) == scalar_record(3.0, id=9)


def test_the_writer_pads_to_4_bytes_and_writes_key_tab_offset_lines():
    records = [image_record(LABEL_A2, b"x" * n, id=n) for n in (1, 2, 3, 4)]
    data, index = write_records(*records, keys=[10, 11, 12, 13])
    assert data == rec_file(*records)
    assert [len(part(r)) % 4 for r in records] == [0, 0, 0, 0]
    assert index == "".join(f"{key}\t{offset}\n" for key, offset in zip([10, 11, 12, 13], offsets(*records)))
    assert write_records(*records)[1].splitlines()[1] == f"1\t{offsets(*records)[1]}"


def test_a_magic_word_at_an_aligned_offset_splits_the_record_into_parts():
    record = image_record(LABEL_A2, b"abcd" + MAGIC_BYTES + b"efgh" + MAGIC_BYTES + b"ij")
    first, second = 72 + 4, 72 + 12  # 24-byte header + 12 labels, then the magics at 4-byte-aligned offsets
    assert record[first:first + 4] == MAGIC_BYTES and record[second:second + 4] == MAGIC_BYTES
    expected = part(record[:first], 1) + part(record[first + 4:second], 2) + part(record[second + 4:], 3)

    data, index = write_records(record, image_record(LABEL_A2, b"next"))

    assert data[:len(expected)] == expected
    assert index.splitlines() == ["0\t0", f"1\t{len(expected)}"]
    records = read_all(data)
    assert [r.data for r in records] == [record, image_record(LABEL_A2, b"next")]
    assert [(r.index, r.offset) for r in records] == [(0, 0), (1, len(expected))]


def test_an_unaligned_magic_word_is_not_split():
    record = image_record(LABEL_A2, b"abc" + MAGIC_BYTES + b"de")
    assert record.find(MAGIC_BYTES) % 4 != 0
    assert frame(record) == part(record)
    assert read_all(frame(record))[0].data == record


def test_magic_words_at_the_very_start_and_end_leave_empty_parts():
    data = MAGIC_BYTES + b"xy"
    assert frame(data) == part(b"", 1) + part(b"xy", 3)
    tail = b"abcd" + MAGIC_BYTES
    assert frame(tail) == part(b"abcd", 1) + part(b"", 3)
    assert [r.data for r in read_all(frame(data) + frame(tail))] == [data, tail]


def test_records_round_trip_through_writer_reader_index_and_random_access(tmp_path):
    rng = random.Random(4)
    records = []
    for i in range(30):
        image = bytearray(rng.randbytes(rng.randrange(0, 64)))
        for _ in range(rng.randrange(3)):  # magic words at random (aligned or not) places
            at = rng.randrange(len(image) + 1)
            image[at:at] = MAGIC_BYTES
        records.append(pack([2, 5, i % 3, 0.1, 0.2, 0.3, 0.4], bytes(image), id=i, id2=i * 2))
    data, index_text = write_records(*records)
    path = tmp_path / "r.rec"
    path.write_bytes(data)
    (tmp_path / "r.idx").write_text(index_text)

    read = read_all(data)
    assert [r.data for r in read] == records
    entries = read_index(tmp_path / "r.idx")
    assert entries == [(i, r.offset) for i, r in enumerate(read)]
    assert scan_offsets(path) == [r.offset for r in read]
    for i, offset in reversed(entries):
        assert read_record_at(path, offset, i) == read[i]
        unpacked = unpack(read[i], "r.rec")
        assert (unpacked.id, unpacked.id2, unpacked.scalar) == (i, 2 * i, False)
        np.testing.assert_array_equal(unpacked.label, np.array([2, 5, i % 3, 0.1, 0.2, 0.3, 0.4], np.float32))
        assert HEADER.size + 4 * 7 + len(unpacked.image) == len(records[i])


@pytest.mark.parametrize("label", [LABEL_A2, LABEL_A4, LABEL_B6], ids=["A2-B5", "A4-width-height", "B6"])
def test_unpack_reads_hand_built_records(label):
    (record,) = read_all(rec_file(image_record(label, b"\x89PNG...", id=5, id2=6)))
    image = unpack(record, "x.rec")
    assert (image.id, image.id2, image.image, image.scalar) == (5, 6, b"\x89PNG...", False)
    np.testing.assert_array_equal(image.label, np.array(label, np.float32))


def test_unpack_reads_a_scalar_label():
    (record,) = read_all(rec_file(scalar_record(4.0, b"img", id=2)))
    image = unpack(record, "x.rec")
    assert image.scalar and image.label.tolist() == [4.0] and image.image == b"img" and image.id == 2


# --- broken files: the message names the file, the record and its byte offset ---------------------
GOOD = [image_record(LABEL_A2, b"first"), image_record(LABEL_A2, b"second image"), image_record(LABEL_A2, b"3")]


@pytest.mark.parametrize("cut", [3, 8 + 10], ids=["in-the-header-word", "in-the-data"])
def test_a_truncated_file(cut):
    data = rec_file(*GOOD)
    second = offsets(*GOOD)[1]
    message = read_error(data[:second + cut], "train/t.rec")
    assert f"train/t.rec: record 1 (byte offset {second}" in message and "truncated" in message


def test_a_file_that_ends_inside_a_split_record():
    record = image_record(LABEL_A2, b"abcd" + MAGIC_BYTES + b"efgh")
    data = rec_file(GOOD[0]) + frame(record)
    message = read_error(data[:-4], "t.rec")
    assert f"t.rec: record 1 (byte offset {len(part(GOOD[0]))}" in message and "truncated" in message


def test_a_bad_magic_at_the_start():
    message = read_error(b"GIF89a" + bytes(20), "images.rec")
    assert "images.rec: record 0 (byte offset 0)" in message
    assert "bad magic 0x38464947" in message and "RecordIO" in message


def test_a_bad_magic_at_record_2():
    data = rec_file(*GOOD[:2]) + struct.pack("<II", 0xDEADBEEF, 4) + b"junk"
    message = read_error(data, "t.rec")
    assert f"t.rec: record 2 (byte offset {len(rec_file(*GOOD[:2]))})" in message
    assert "bad magic 0xdeadbeef" in message


@pytest.mark.parametrize("data, problem", [
    (part(b"abcd", 2) + part(b"ef", 3), "starts with continuation flag 2"),
    (part(b"abcd", 3), "starts with continuation flag 3"),
    (part(b"abcd", 1) + part(b"ef", 0), "goes on with continuation flag 0"),
    (part(b"abcd", 1) + part(b"ef", 1), "goes on with continuation flag 1"),
])
def test_parts_in_a_wrong_order(data, problem):
    message = read_error(rec_file(GOOD[0]) + data, "t.rec")
    assert f"t.rec: record 1 (byte offset {len(part(GOOD[0]))}" in message and problem in message


@pytest.mark.parametrize("cut, at", [(-2, 2), (-4 - 8 - 1, 2), (-len(part(GOOD[2])) - 3, 1)])
def test_scanning_offsets_finds_truncation(tmp_path, cut, at):
    path = tmp_path / "t.rec"
    path.write_bytes(rec_file(*GOOD)[:cut])
    with pytest.raises(DataError) as caught:
        scan_offsets(path)
    assert f"t.rec: record {at} (byte offset {offsets(*GOOD)[at]}" in str(caught.value)
    assert "truncated" in str(caught.value)


def test_scanning_offsets_finds_a_bad_magic(tmp_path):
    path = tmp_path / "t.rec"
    path.write_bytes(rec_file(*GOOD[:2]) + b"\0" * 12)
    with pytest.raises(DataError, match=rf"t.rec: record 2 \(byte offset {offsets(*GOOD)[2]}\): bad magic"):
        scan_offsets(path)


def test_read_record_at_the_end_of_the_file(tmp_path):
    path = tmp_path / "t.rec"
    path.write_bytes(rec_file(*GOOD))
    end = len(rec_file(*GOOD))
    with pytest.raises(DataError, match=rf"t.rec: record 3 \(byte offset {end}\): no record there"):
        read_record_at(path, end, 3)


def test_unpack_a_record_shorter_than_the_header():
    (record,) = read_all(rec_file(b"\0" * 10))
    with pytest.raises(DataError, match=r"x.rec: record 0 \(byte offset 0\): 10 bytes, too short for the 24-byte"):
        unpack(record, "x.rec")


def test_unpack_a_header_announcing_more_labels_than_the_record_holds():
    (record,) = read_all(rec_file(struct.pack("<IfQQ", 100, 0.0, 0, 0) + b"\0" * 40))
    with pytest.raises(DataError, match=r"record 0 \(byte offset 0\): the header announces 100 label values"):
        unpack(record, "x.rec")


def test_read_index_takes_tabs_or_spaces_and_skips_blank_lines(tmp_path):
    path = tmp_path / "r.idx"
    path.write_text("0\t0\n\n5 128\n7\t4096\n")
    assert read_index(path) == [(0, 0), (5, 128), (7, 4096)]


@pytest.mark.parametrize("line", ["0", "a\t1", "1\t-8", "1\t2.5"])
def test_read_index_names_a_bad_line(tmp_path, line):
    path = tmp_path / "r.idx"
    path.write_text(f"0\t0\n{line}\n")
    with pytest.raises(DataError, match=rf"r.idx: line 2: .* is not 'key<TAB>byte offset'"):
        read_index(path)
