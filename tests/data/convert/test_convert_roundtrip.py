"""Round trips: a generated image+JSON data set through every format and every pair of formats keeps
its images (byte for byte), objects and class names."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from convert_helpers import CLASS_NAMES, DESTINATIONS, assert_same, image_json_source, read_format
from sagedet.data.convert.dataset import Options
from sagedet.data.convert.formats import MODULES, convert
from sagedet.data.imagejson import ImageJsonSource
from sagedet.data.manifest import ManifestSource
from sagedet.data.recordio_source import RecordIOSource

FORMATS = list(MODULES)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return image_json_source(tmp_path_factory.mktemp("source"))


@pytest.fixture(scope="module")
def original(source):
    return read_format("imagejson", source)


def test_the_generated_source(original):
    assert original.class_names == CLASS_NAMES
    assert len(original.items) == 5
    empty = [item for item in original.items if item.name == "more/empty.png"]
    assert len(empty) == 1 and empty[0].objects.labels.size == 0 and (empty[0].width, empty[0].height) == (60, 50)
    assert sum(item.objects.labels.size for item in original.items) >= 4


@pytest.mark.parametrize("target", FORMATS)
def test_image_json_to_a_format_and_back(tmp_path, source, original, target):
    dst = tmp_path / DESTINATIONS[target]
    convert("imagejson", target, source, dst, Options())
    assert_same(original, read_format(target, dst))
    back = tmp_path / "back" / "train"
    convert(target, "imagejson", dst, back, Options())
    assert_same(original, read_format("imagejson", back))


@pytest.mark.parametrize("other", FORMATS)
def test_a_format_to_recordio_and_back(tmp_path, source, original, other):
    first = tmp_path / "first" / DESTINATIONS[other]
    convert("imagejson", other, source, first, Options())
    rec = tmp_path / "rec" / "train.rec"
    convert(other, "recordio", first, rec, Options())
    assert_same(original, read_format("recordio", rec))
    again = tmp_path / "again" / DESTINATIONS[other]
    convert("recordio", other, rec, again, Options())
    assert_same(original, read_format(other, again))


@pytest.mark.parametrize("first, second", list(itertools.product(FORMATS, FORMATS)))
def test_every_pair_of_formats(tmp_path, source, original, first, second):
    middle = tmp_path / "1" / DESTINATIONS[first]
    convert("imagejson", first, source, middle, Options())
    last = tmp_path / "2" / DESTINATIONS[second]
    convert(first, second, middle, last, Options())
    assert_same(original, read_format(second, last), atol=2e-6)


def test_recordio_with_width_and_height_in_the_label_header(tmp_path, source, original):
    rec = tmp_path / "gluoncv.rec"
    convert("imagejson", "recordio", source, rec, Options(label_header=4))
    assert_same(original, read_format("recordio", rec))
    from sagedet.data.inspect import inspect_records

    for entry, item in zip(inspect_records(rec), original.items):
        assert entry["label"][:4] == [4.0, 5.0, item.width, item.height]


def test_converted_recordio_trains_like_the_original(tmp_path, source):
    """RecordIOSource on the converted .rec yields what ImageJsonSource yields on the original."""
    channel = tmp_path / "train"
    convert("imagejson", "recordio", source, channel / "train.rec", Options())
    expected = ImageJsonSource(source, source.with_name("train_annotation"), 3, "train")
    actual = RecordIOSource(channel, 3, 350, "train")
    assert len(actual) == len(expected)
    for i in range(len(expected)):
        want, got = expected.read(i), actual.read(i)
        assert got.image_bytes == want.image_bytes
        assert got.objects.labels.tolist() == want.objects.labels.tolist()
        np.testing.assert_allclose(got.objects.boxes, want.objects.boxes, atol=1e-7, rtol=0)


def test_a_converted_manifest_trains_like_the_original(tmp_path, source):
    """ManifestSource (File mode: the manifest and its images in the channel folder) on the converted
    manifest yields what ImageJsonSource yields on the original, with the class names."""
    channel = tmp_path / "train"
    convert("imagejson", "manifest", source, channel / "train.manifest", Options(s3_prefix="s3://bucket/train"))
    expected = ImageJsonSource(source, source.with_name("train_annotation"), 3, "train")
    actual = ManifestSource(channel, 3, "train")
    assert actual.class_names == CLASS_NAMES and len(actual) == len(expected)
    got = {actual.name(i): actual.read(i) for i in range(len(actual))}
    for i in range(len(expected)):
        want = expected.read(i)
        sample = got[want.name]
        assert sample.image_bytes == want.image_bytes
        assert sample.objects.labels.tolist() == want.objects.labels.tolist()
        np.testing.assert_allclose(sample.objects.boxes, want.objects.boxes, atol=1e-6, rtol=0)
