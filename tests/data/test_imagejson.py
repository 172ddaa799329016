import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sagedet.data.imagejson import ImageJsonSource
from sagedet.errors import DataError

BOX = {"class_id": 1, "left": 10, "top": 20, "width": 30, "height": 40}


def write_image(path: Path, size=(100, 80), mode="RGB", image_format=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size).save(path, format=image_format)
    return path


def write_json(path: Path, document) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


def annotation(file="images/a.jpg", size=(100, 80), annotations=(BOX,), **extra) -> dict:
    width, height = size
    return {
        "file": file,
        "image_size": [{"width": width, "height": height, "depth": 3}],
        "annotations": list(annotations),
        **extra,
    }


@pytest.fixture
def channels(tmp_path):
    return tmp_path / "train", tmp_path / "train_annotation"


def load(channels, num_classes=3) -> ImageJsonSource:
    return ImageJsonSource(channels[0], channels[1], num_classes, "train")


def load_error(channels, num_classes=3) -> str:
    with pytest.raises(DataError) as caught:
        load(channels, num_classes)
    return str(caught.value)


def test_indexes_images_with_normalized_boxes(channels):
    images, annotations = channels
    write_image(images / "images" / "a.jpg")
    write_image(images / "images" / "b.PNG", size=(50, 50), image_format="PNG")
    write_json(annotations / "a.json", annotation(categories=[{"class_id": 1, "name": "dog"}]))
    write_json(annotations / "nested" / "b.json", annotation("images/b.PNG", (50, 50), annotations=()))

    source = load(channels)

    assert len(source) == 2
    assert [source.name(0), source.name(1)] == ["train/images/a.jpg", "train/images/b.PNG"]
    assert source.class_names == {1: "dog"}
    raw = source.read(0)
    assert raw.name == "train/images/a.jpg"
    assert raw.image_bytes == (images / "images" / "a.jpg").read_bytes()
    np.testing.assert_allclose(raw.objects.boxes, [[0.1, 0.25, 0.4, 0.75]])
    assert raw.objects.boxes.dtype == np.float32
    assert raw.objects.labels.tolist() == [1]
    empty = source.read(1).objects
    assert empty.boxes.shape == (0, 4) and empty.labels.shape == (0,)


def test_missing_categories_give_no_class_names(channels):
    write_image(channels[0] / "images" / "a.jpg")
    write_json(channels[1] / "a.json", annotation())
    assert load(channels).class_names == {}


def test_falls_back_to_the_image_named_like_the_json(channels):
    write_image(channels[0] / "elsewhere" / "a.jpeg")
    write_json(channels[1] / "a.json", annotation(file="sample_image/a.jpg"))
    assert load(channels).name(0) == "train/elsewhere/a.jpeg"


def test_file_may_be_left_out(channels):
    write_image(channels[0] / "a.jpg")
    document = annotation()
    del document["file"]
    write_json(channels[1] / "a.json", document)
    assert load(channels).name(0) == "train/a.jpg"


def test_hidden_and_other_files_are_ignored(channels):
    write_image(channels[0] / "a.jpg")
    (channels[0] / "._a.jpg").write_bytes(b"AppleDouble")
    (channels[0] / "notes.txt").write_text("hello")
    write_json(channels[1] / "a.json", annotation())
    assert len(load(channels)) == 1


def test_box_within_one_pixel_of_the_edge_is_clipped(channels):
    write_image(channels[0] / "images" / "a.jpg")
    box = {"class_id": 0, "left": -0.8, "top": 0, "width": 101.5, "height": 80.9}
    write_json(channels[1] / "a.json", annotation(annotations=[box]))
    np.testing.assert_allclose(load(channels).read(0).objects.boxes, [[0, 0, 1, 1]])


def test_image_without_annotation_json(channels):
    write_image(channels[0] / "images" / "a.jpg")
    write_image(channels[0] / "images" / "lonely.jpg")
    write_json(channels[1] / "a.json", annotation())
    message = load_error(channels)
    assert "train/images/lonely.jpg: has no annotation JSON" in message
    assert "lonely.json" in message


def test_json_whose_image_is_missing(channels):
    write_image(channels[0] / "images" / "a.jpg")
    write_json(channels[1] / "a.json", annotation())
    write_json(channels[1] / "ghost.json", annotation(file="images/ghost.jpg"))
    message = load_error(channels)
    assert "train_annotation/ghost.json: image not found: 'file' 'images/ghost.jpg'" in message
    assert "no image named ghost.jpg" in message


def test_ambiguous_fallback(channels):
    write_image(channels[0] / "x" / "a.jpg")
    write_image(channels[0] / "y" / "a.png", image_format="PNG")
    write_json(channels[1] / "a.json", annotation(file="a.jpg"))
    message = load_error(channels)
    assert "train_annotation/a.json: image not found" in message
    assert "several images are named a: x/a.jpg, y/a.png" in message


def test_two_jsons_for_one_image(channels):
    write_image(channels[0] / "images" / "a.jpg")
    write_json(channels[1] / "a.json", annotation())
    write_json(channels[1] / "copy.json", annotation())
    assert "train_annotation/copy.json: describes train/images/a.jpg, which train_annotation/a.json" in (
        load_error(channels)
    )


@pytest.mark.parametrize(
    "document, reason",
    [
        ("{not json", "is not valid JSON"),
        (b"\xff\xfe\x00garbage", "is not valid JSON"),
        ([1, 2], "must be a JSON object, got a list"),
        ({"file": "images/a.jpg", "annotations": []}, "lacks the required key 'image_size'"),
        ({"image_size": [{"width": 100, "height": 80}]}, "lacks the required key 'annotations'"),
        (annotation(file=7), "'file' must be a string"),
        ({**annotation(), "image_size": {"width": 100, "height": 80}}, "'image_size' must be a list of one object"),
        ({**annotation(), "image_size": [{"width": "100", "height": 80}]}, "must be positive integers"),
        ({**annotation(), "annotations": {"class_id": 0}}, "'annotations' must be a list of objects, got an object"),
        (annotation(annotations=[[1, 2, 3, 4]]), "annotations[0] must be an object"),
        (annotation(annotations=[{"class_id": 0, "left": 1, "top": 1, "width": 5}]), "lacks the required key 'height'"),
        (annotation(annotations=[{**BOX, "left": "10"}]), "annotations[0]: 'left' must be a number, got '10'"),
        (annotation(annotations=[{**BOX, "class_id": True}]), "'class_id' must be a number, got True"),
        (annotation(categories={"0": "dog"}), "'categories' must be a list of objects"),
        (annotation(categories=[{"class_id": 0}]), "categories[0] must be an object with an integer 'class_id'"),
    ],
)
def test_malformed_json(channels, document, reason):
    write_image(channels[0] / "images" / "a.jpg")
    path = channels[1] / "a.json"
    if isinstance(document, bytes):
        path.parent.mkdir(parents=True)
        path.write_bytes(document)
    else:
        write_json(path, document)
    message = load_error(channels)
    assert "train_annotation/a.json" in message
    assert reason in message


@pytest.mark.parametrize("class_id", [-1, 3, 1.5, 7.0])
def test_class_id_out_of_range(channels, class_id):
    write_image(channels[0] / "images" / "a.jpg")
    write_json(channels[1] / "a.json", annotation(annotations=[BOX, {**BOX, "class_id": class_id}]))
    message = load_error(channels)
    assert f"train_annotation/a.json: annotations[1]: class_id {class_id!r} is not an integer in [0, 3)" in message
    assert "num_classes is 3" in message


def test_integral_float_class_id_is_accepted(channels):
    write_image(channels[0] / "images" / "a.jpg")
    write_json(channels[1] / "a.json", annotation(annotations=[{**BOX, "class_id": 2.0}]))
    assert load(channels).read(0).objects.labels.tolist() == [2]


@pytest.mark.parametrize("width, height", [(0, 10), (10, -1)])
def test_empty_box(channels, width, height):
    write_image(channels[0] / "images" / "a.jpg")
    write_json(channels[1] / "a.json", annotation(annotations=[{**BOX, "width": width, "height": height}]))
    message = load_error(channels)
    assert "train_annotation/a.json: annotations[0]: width and height must be > 0" in message


@pytest.mark.parametrize(
    "box",
    [
        {"left": -2, "top": 0, "width": 10, "height": 10},
        {"left": 0, "top": -1.5, "width": 10, "height": 10},
        {"left": 90, "top": 0, "width": 12, "height": 10},
        {"left": 0, "top": 75, "width": 10, "height": 7},
        {"left": 100.5, "top": 0, "width": 0.4, "height": 10},
    ],
)
def test_box_outside_the_image(channels, box):
    write_image(channels[0] / "images" / "a.jpg")
    write_json(channels[1] / "a.json", annotation(annotations=[{"class_id": 0, **box}]))
    message = load_error(channels)
    assert "train_annotation/a.json: annotations[0]: box left=" in message
    assert "lies outside the 100x80 image" in message


def test_image_size_disagrees_with_the_image(channels):
    write_image(channels[0] / "images" / "a.jpg")
    write_json(channels[1] / "a.json", annotation(size=(120, 80)))
    message = load_error(channels)
    assert "train_annotation/a.json: image_size says 120x80 but train/images/a.jpg is 100x80" in message


def test_image_size_transposed_hints_at_exif(channels):
    write_image(channels[0] / "images" / "a.jpg")
    write_json(channels[1] / "a.json", annotation(size=(80, 100)))
    assert "EXIF orientation is not applied" in load_error(channels)


def test_image_that_does_not_decode(channels):
    (channels[0] / "images").mkdir(parents=True)
    (channels[0] / "images" / "a.jpg").write_bytes(b"this is not a JPEG")
    write_json(channels[1] / "a.json", annotation())
    assert "train/images/a.jpg: does not decode as JPEG or PNG" in load_error(channels)


def test_other_image_format_with_an_image_suffix(channels):
    write_image(channels[0] / "images" / "a.jpg", image_format="BMP")
    write_json(channels[1] / "a.json", annotation())
    assert "train/images/a.jpg: is a BMP image; only JPEG and PNG images are supported" in load_error(channels)


@pytest.mark.parametrize(
    "mode, image_format, channels_text",
    [
        ("L", "JPEG", "has 1 channel(s) (PIL mode L)"),
        ("CMYK", "JPEG", "has 4 channel(s) (PIL mode CMYK)"),
        ("RGBA", "PNG", "has 4 channel(s) (PIL mode RGBA)"),
        ("P", "PNG", "has 1 channel(s) (PIL mode P)"),
        ("I;16", "PNG", "has 1 channel(s) (PIL mode I;16)"),
    ],
)
def test_image_that_is_not_rgb(channels, mode, image_format, channels_text):
    suffix = "jpg" if image_format == "JPEG" else "png"
    write_image(channels[0] / "images" / f"a.{suffix}", mode=mode, image_format=image_format)
    write_json(channels[1] / "a.json", annotation(file=f"images/a.{suffix}"))
    message = load_error(channels)
    assert f"train/images/a.{suffix}: {channels_text}; only 3-channel RGB images are supported" in message


def test_empty_channel(channels):
    channels[0].mkdir()
    (channels[0] / "readme.txt").write_text("no images here")
    write_json(channels[1] / "a.json", annotation())
    assert "The train channel" in load_error(channels)
    assert "holds no images" in load_error(channels)


def test_missing_channel_folder(channels):
    write_image(channels[0] / "a.jpg")
    assert "The train_annotation channel is missing" in load_error(channels)


def test_annotation_channel_without_json(channels):
    write_image(channels[0] / "a.jpg")
    channels[1].mkdir()
    assert "The train_annotation channel" in load_error(channels)
    assert "holds no .json files" in load_error(channels)


def test_conflicting_category_names(channels):
    write_image(channels[0] / "images" / "a.jpg")
    write_image(channels[0] / "images" / "b.jpg")
    write_json(channels[1] / "a.json", annotation(categories=[{"class_id": 1, "name": "dog"}]))
    write_json(channels[1] / "b.json", annotation("images/b.jpg", categories=[{"class_id": 1, "name": "cat"}]))
    assert (
        "train_annotation/b.json: categories[0] names class_id 1 'cat', but train_annotation/a.json names it 'dog'"
        in load_error(channels)
    )


def test_reports_many_problems_at_once(channels):
    for i in range(25):
        write_image(channels[0] / "images" / f"img{i:02d}.jpg")
    write_json(channels[1] / "img00.json", annotation("images/img00.jpg", annotations=[{**BOX, "class_id": 9}]))
    message = load_error(channels)
    assert message.startswith("25 problem(s) in the train data:")
    assert "train_annotation/img00.json: annotations[0]: class_id 9" in message
    assert "train/images/img01.jpg: has no annotation JSON" in message
    assert message.endswith("... and 5 more")
    assert len(message.splitlines()) == 1 + 20 + 1
