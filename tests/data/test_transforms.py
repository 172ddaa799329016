import pickle

import pytest
import torch
from torchvision import tv_tensors

from sagedet.data.transforms import eval_transform, train_transform

SIZE = 48


@pytest.fixture(autouse=True)
def one_thread():
    """As in DataLoader workers: intra-op threads only slow these small images down."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def inputs(boxes: list[list[float]], height: int = 60, width: int = 90):
    image = tv_tensors.Image(torch.randint(0, 256, (3, height, width), dtype=torch.uint8))
    target = {
        "boxes": tv_tensors.BoundingBoxes(
            torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), format="XYXY", canvas_size=(height, width)
        ),
        "labels": torch.arange(len(boxes), dtype=torch.int64),
    }
    return image, target


@pytest.mark.parametrize(
    "boxes",
    [[], [[10, 5, 40, 50]], [[0, 0, 90, 60], [70, 40, 90, 60], [30, 20, 31, 21]]],
    ids=["no objects", "one object", "three objects"],
)
def test_train_transform_keeps_boxes_valid(boxes):
    torch.manual_seed(0)
    transform = train_transform(SIZE)
    kept = 0
    for _ in range(100):
        image, target = transform(*inputs(boxes))
        out = target["boxes"]
        assert image.shape == (3, SIZE, SIZE) and image.dtype == torch.float32
        assert 0 <= image.min() and image.max() <= 1
        assert out.shape == (len(target["labels"]), 4) and len(target["labels"]) <= len(boxes)
        assert set(target["labels"].tolist()) <= set(range(len(boxes)))
        assert (out >= 0).all() and (out <= SIZE).all()
        assert (out[:, 2] > out[:, 0]).all() and (out[:, 3] > out[:, 1]).all()
        kept += len(out)
    assert kept > 0 or not boxes


def test_train_transform_augments():
    torch.manual_seed(0)
    transform = train_transform(SIZE)
    results = {tuple(transform(*inputs([[10, 5, 40, 50]]))[1]["boxes"].flatten().tolist()) for _ in range(20)}
    assert len(results) > 5


def test_eval_transform_only_resizes():
    image, target = inputs([[9, 6, 45, 60]])
    out_image, out_target = eval_transform(SIZE)(image, target)
    assert out_image.shape == (3, SIZE, SIZE) and out_image.dtype == torch.float32
    assert 0 <= out_image.min() and out_image.max() <= 1
    torch.testing.assert_close(out_target["boxes"].as_subclass(torch.Tensor), torch.tensor([[4.8, 4.8, 24.0, 48.0]]))
    assert out_target["labels"].tolist() == [0]


def test_transforms_pickle_for_spawned_workers():
    for transform in (train_transform(SIZE), eval_transform(SIZE)):
        image, target = pickle.loads(pickle.dumps(transform))(*inputs([[10, 5, 40, 50]]))
        assert image.shape == (3, SIZE, SIZE)
