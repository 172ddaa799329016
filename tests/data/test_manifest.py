"""Augmented manifests: File-mode .manifest files beside their images, and the RecordIO-wrapped
records SageMaker streams in Pipe mode."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sagedet.data.annotations import ClassNames
from sagedet.data.manifest import ManifestSource, label_attribute, stream_samples
from sagedet.data.recordio import RecordWriter, frame
from sagedet.data.sources import class_names, open_sources
from sagedet.sagemaker.channels import Channel, DataChannels
from sagedet.errors import DataError


def jpeg(width=100, height=50, mode="RGB", image_format="JPEG") -> bytes:
    out = io.BytesIO()
    Image.new(mode, (width, height), (200, 30, 30) if mode == "RGB" else 128).save(out, image_format)
    return out.getvalue()


def label(annotations, width=100, height=50):
    return {"image_size": [{"width": width, "height": height, "depth": 3}], "annotations": annotations}


BOX = {"class_id": 1, "left": 10, "top": 5, "width": 40, "height": 20}
GOOD_LABEL = json.dumps(label([BOX])).encode()


def line(ref, value, attribute="bounding-box", class_map=None):
    document = {"source-ref": ref, attribute: value}
    if class_map is not None:
        document[f"{attribute}-metadata"] = {"class-map": class_map, "type": "groundtruth/object-detection"}
    return json.dumps(document)


@pytest.fixture
def channel(tmp_path: Path) -> Path:
    root = tmp_path / "train"
    (root / "images" / "a").mkdir(parents=True)
    (root / "images" / "a" / "one.jpg").write_bytes(jpeg())
    (root / "two.jpg").write_bytes(jpeg(60, 40))
    return root


def test_file_mode_finds_source_refs_by_the_tail_of_their_path(channel):
    (channel / "train.manifest").write_text("\n".join([
        line("s3://bucket/prefix/images/a/one.jpg", label([BOX]), "my-boxes", {"0": "cat", "1": "dog"}),
        line("s3://bucket/elsewhere/two.jpg", label([], 60, 40), "my-boxes"),
        "",
    ]))
    source = ManifestSource(channel, num_classes=2, channel="train")
    assert len(source) == 2
    assert source.class_names == {0: "cat", 1: "dog"}
    first = source.read(0)
    assert first.name == "train/images/a/one.jpg"
    assert first.image_bytes == (channel / "images" / "a" / "one.jpg").read_bytes()
    np.testing.assert_allclose(first.objects.boxes, [[0.1, 0.1, 0.5, 0.5]])
    assert first.objects.labels.tolist() == [1]
    assert source.name(1) == "train/two.jpg" and len(source.read(1).objects.labels) == 0


def test_file_mode_reports_every_bad_line_at_once(channel):
    (channel / "train.manifest").write_text("\n".join([
        "not json",
        line("s3://b/missing.jpg", label([BOX])),
        line("s3://b/images/a/one.jpg", label([{**BOX, "class_id": 7}])),
        line("s3://b/images/a/one.jpg", label([BOX], 99, 50)),
        json.dumps({"source-ref": "s3://b/two.jpg", "something": 1}),
        line("s3://b/images/a/one.jpg", label([{**BOX, "left": 90}])),
    ]))
    with pytest.raises(DataError) as raised:
        ManifestSource(channel, num_classes=2, channel="train")
    message = str(raised.value)
    assert message.startswith("6 problem(s) in the train data:")
    assert "train/train.manifest: line 1: is not valid JSON" in message
    assert "train/train.manifest: line 2: image 's3://b/missing.jpg' not found in the train channel" in message
    assert "line 3: 'bounding-box': annotations[0]: class_id 7 is not an integer in [0, 2)" in message
    assert "line 4: 'bounding-box': image_size says 99x50 but the image is 100x50" in message
    assert "line 5: no attribute with 'annotations'" in message
    assert "line 6: 'bounding-box': annotations[0]: box left=90" in message


def test_file_mode_refuses_images_that_are_not_rgb_jpeg_or_png_up_front(channel):
    (channel / "gray.jpg").write_bytes(jpeg(mode="L"))
    (channel / "anim.gif").write_bytes(jpeg(image_format="GIF"))
    (channel / "train.manifest").write_text("\n".join([
        line("s3://b/images/a/one.jpg", label([BOX])), line("s3://b/gray.jpg", label([BOX])),
        line("s3://b/anim.gif", label([BOX]))]))
    with pytest.raises(DataError) as raised:
        ManifestSource(channel, num_classes=2, channel="train")
    message = str(raised.value)
    assert message.startswith("2 problem(s) in the train data:")
    assert ("train/train.manifest: line 2: train/gray.jpg: has 1 channel(s) (PIL mode L); only 3-channel RGB images "
            "are supported") in message
    assert "train/train.manifest: line 3: train/anim.gif: is a GIF image; only JPEG and PNG images are supported" \
        in message


def test_a_channel_without_manifest_is_named(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError, match=r"The train channel \(.*\) holds no .manifest file"):
        ManifestSource(tmp_path / "train", 2, "train")


def test_several_label_attributes_are_ambiguous():
    with pytest.raises(DataError, match="several attributes \\(a, b\\)"):
        label_attribute("x.manifest: line 1", {"source-ref": "s3://b/k.jpg", "a": label([]), "b": label([])})


def records(*payloads: bytes) -> io.BytesIO:
    out = io.BytesIO()
    writer = RecordWriter(out)
    for payload in payloads:
        writer.write(payload)
    out.seek(0)
    return out


def test_pipe_records_image_then_label_then_metadata():
    payloads = [jpeg(), json.dumps(label([BOX])).encode(), b'{"class-map": {"1": "dog"}}',
                jpeg(60, 40), json.dumps(label([], 60, 40)).encode()]
    samples = list(stream_samples(records(*payloads), "train_0", num_classes=2))
    fourth = sum(len(frame(payload)) for payload in payloads[:3])
    assert [s.name for s in samples] == ["train_0: records 0-1 (byte offset 0)",
                                         f"train_0: records 3-4 (byte offset {fourth})"]
    assert samples[1].image_bytes == payloads[3]
    np.testing.assert_allclose(samples[0].objects.boxes, [[0.1, 0.1, 0.5, 0.5]])
    assert len(samples[1].objects.labels) == 0


@pytest.mark.parametrize(("payloads", "expected"), [
    ((b'{"annotations": []}', b"x"), "train_0: record 0 (byte offset 0): a JSON record before any image"),
    ((b"\xff\xd8\xff image one", b"\xff\xd8\xff image two"),
     "train_0: record 0 (byte offset 0): an image followed by another image (record 1)"),
    ((b"\xff\xd8 image",), "the stream ends after an image without its label record"),
    ((b"\xff\xd8 not a jpeg", b'{"annotations": []}'), "train_0: records 0-1 (byte offset 0): does not decode as JPEG"),
    ((jpeg(mode="L"), GOOD_LABEL),
     "train_0: records 0-1 (byte offset 0): has 1 channel(s) (PIL mode L); only 3-channel"),
])
def test_pipe_stream_errors_name_the_record(payloads, expected):
    with pytest.raises(DataError) as raised:
        list(stream_samples(records(*payloads), "train_0", num_classes=2))
    assert expected in str(raised.value)



def offset_of(payloads, index: int) -> int:
    return sum(len(frame(payload)) for payload in payloads[:index])


@pytest.mark.parametrize(("label_record", "problem"), [
    (GOOD_LABEL[:-5], "the label attribute is not valid JSON (Expecting value: line 1 column 137"),
    (b'"bounding-box"', "the label attribute must be a JSON object with 'annotations' and 'image_size', got a "
                        "string"),
    (b"[1, 2]", "the label attribute must be a JSON object with 'annotations' and 'image_size', got a list"),
], ids=["truncated", "json-string", "json-list"])
@pytest.mark.parametrize("last", [False, True], ids=["then-more-lines", "at-the-end"])
def test_a_label_record_that_is_no_json_object_is_named(label_record, problem, last):
    payloads = [jpeg(), GOOD_LABEL, jpeg(), label_record] + ([] if last else [jpeg(), GOOD_LABEL])
    with pytest.raises(DataError) as raised:
        list(stream_samples(records(*payloads), "train_0", num_classes=2))
    message = str(raised.value)
    assert message.startswith(f"train_0: record 3 (byte offset {offset_of(payloads, 3)}), the label of the image at "
                              f"record 2: {problem}")
    assert "AttributeNames" in message and "then its label attribute" in message


def test_further_attributes_may_hold_any_json_value():
    payloads = [jpeg(), GOOD_LABEL, b"5", b'"a note"', b"null", jpeg(60, 40), json.dumps(label([], 60, 40)).encode(),
                b"[1]"]
    samples = list(stream_samples(records(*payloads), "train_0", num_classes=2))
    assert [s.name for s in samples] == ["train_0: records 0-1 (byte offset 0)",
                                         f"train_0: records 5-6 (byte offset {offset_of(payloads, 5)})"]
    assert samples[1].image_bytes == payloads[5]


def test_a_further_attribute_that_is_not_json_is_named():
    payloads = [jpeg(), GOOD_LABEL, b'{"class-map": {"1": "dog"', jpeg(), GOOD_LABEL]
    with pytest.raises(DataError) as raised:
        list(stream_samples(records(*payloads), "train_0", num_classes=2))
    assert str(raised.value).startswith(f"train_0: record 2 (byte offset {offset_of(payloads, 2)}): is neither a JPEG "
                                        "or PNG image nor valid JSON (Expecting ',' delimiter")


def test_pipe_class_names_come_from_the_metadata_class_map():
    names = ClassNames(2)
    metadata = b'{"class-map": {"0": "cat", "1": "dog"}, "type": "groundtruth/object-detection"}'
    payloads = [jpeg(), GOOD_LABEL, metadata, jpeg(), GOOD_LABEL, metadata]
    assert len(list(stream_samples(records(*payloads), "train_0", 2, names))) == 2
    assert names.names == {0: "cat", 1: "dog"}
    clash = [jpeg(), GOOD_LABEL, b'{"class-map": {"1": "wolf"}}']
    with pytest.raises(DataError, match=r"train_1: record 2 \(byte offset \d+\) \(a metadata attribute\): "
                                        r"class-map\['1'\] names class_id 1 'wolf', but .* names it 'dog'"):
        list(stream_samples(records(*clash), "train_1", 2, names))


def test_a_pipe_mode_manifest_channel_learns_its_class_names_in_a_pass(tmp_path):
    metadata = b'{"class-map": {"1": "dog"}}'
    for name in ("train", "validation"):
        (tmp_path / f"{name}_0").write_bytes(records(jpeg(), GOOD_LABEL, metadata).getvalue())
    train, validation = (Channel(name, "application/x-image", "Pipe", "FullyReplicated", "RecordIO", tmp_path / name)
                         for name in ("train", "validation"))
    streams = open_sources(DataChannels(train, validation, None, None, None), num_classes=2)
    assert class_names(2, *streams) == ["class_0", "class_1"]  # nothing read yet
    assert len(list(streams[0].samples(0))) == 1
    assert class_names(2, *streams) == ["class_0", "dog"]
