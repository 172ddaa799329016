import json

import numpy as np
import pytest
from PIL import Image

from sagedet.data.imagejson import ImageJsonSource
from sagedet.data.synthetic import SYNTHETIC_CLASSES, write_synthetic_dataset


def read_tree(root):
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


@pytest.mark.parametrize("image_format, suffix", [("jpeg", "jpg"), ("png", "png")])
def test_round_trips_through_image_json_source(tmp_path, image_format, suffix):
    write_synthetic_dataset(tmp_path, "validation", 12, seed=3, image_format=image_format)
    source = ImageJsonSource(
        tmp_path / "validation", tmp_path / "validation_annotation", len(SYNTHETIC_CLASSES), "validation"
    )

    assert len(source) == 12
    assert source.class_names == dict(enumerate(SYNTHETIC_CLASSES))
    for index in range(12):
        stem = f"validation_{index:05d}"
        assert source.name(index) == f"validation/images/{stem}.{suffix}"
        document = json.loads((tmp_path / "validation_annotation" / f"{stem}.json").read_text())
        assert document["file"] == f"images/{stem}.{suffix}"
        size = document["image_size"][0]
        width, height = size["width"], size["height"]
        expected = [
            [a["left"] / width, a["top"] / height, (a["left"] + a["width"]) / width, (a["top"] + a["height"]) / height]
            for a in document["annotations"]
        ]
        objects = source.read(index).objects
        np.testing.assert_allclose(objects.boxes, np.array(expected).reshape(-1, 4), atol=1e-6)
        assert objects.labels.tolist() == [a["class_id"] for a in document["annotations"]]


def test_images_hold_one_to_three_separate_shapes(tmp_path):
    write_synthetic_dataset(tmp_path, "train", 40, seed=1)
    counts, sizes = set(), set()
    for path in sorted((tmp_path / "train_annotation").glob("*.json")):
        document = json.loads(path.read_text())
        size = document["image_size"][0]
        sizes.add((size["width"], size["height"]))
        short = min(size["width"], size["height"])
        assert 0.8 * 128 <= size["height"] <= 1.2 * 128 and 0.8 * 160 <= size["width"] <= 1.2 * 160
        boxes = [(a["left"], a["top"], a["left"] + a["width"], a["top"] + a["height"]) for a in document["annotations"]]
        counts.add(len(boxes))
        for i, (x0, y0, x1, y1) in enumerate(boxes):
            assert 0 <= x0 < x1 <= size["width"] and 0 <= y0 < y1 <= size["height"]
            assert 0.3 * short <= max(x1 - x0, y1 - y0) and min(x1 - x0, y1 - y0) <= 0.8 * short
            for u0, v0, u1, v1 in boxes[i + 1 :]:
                assert x1 <= u0 or u1 <= x0 or y1 <= v0 or v1 <= y0
    assert counts == {1, 2, 3}
    assert len(sizes) > 10


def test_box_is_the_tight_bound_of_the_shape(tmp_path):
    write_synthetic_dataset(tmp_path, "train", 1, seed=5, image_format="png")
    document = json.loads((tmp_path / "train_annotation" / "train_00000.json").read_text())
    pixels = np.asarray(Image.open(tmp_path / "train" / "images" / "train_00000.png"), dtype=np.int16)
    box = document["annotations"][0]
    left, top, right, bottom = box["left"], box["top"], box["left"] + box["width"], box["top"] + box["height"]
    inside = pixels[top:bottom, left:right]
    # shape pixels are vivid or dark (the stripes' shade); the background is pale (every channel >= 150)
    shape = (inside.max(axis=2) - inside.min(axis=2) > 100) | (inside.max(axis=2) < 120)
    assert shape[0].any() and shape[-1].any() and shape[:, 0].any() and shape[:, -1].any()


def test_is_deterministic_for_a_seed(tmp_path):
    write_synthetic_dataset(tmp_path / "a", "train", 5, seed=7)
    write_synthetic_dataset(tmp_path / "b", "train", 5, seed=7)
    write_synthetic_dataset(tmp_path / "c", "train", 5, seed=8)
    assert read_tree(tmp_path / "a") == read_tree(tmp_path / "b")
    assert read_tree(tmp_path / "a") != read_tree(tmp_path / "c")


def test_rejects_unknown_format(tmp_path):
    with pytest.raises(ValueError, match="image_format"):
        write_synthetic_dataset(tmp_path, "train", 1, seed=0, image_format="gif")
