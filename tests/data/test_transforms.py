import math
import pickle

import pytest
import torch
from torchvision import tv_tensors
from torchvision.ops import box_iou
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from sagedet.data.transforms import (MEAN_PIXEL, RandomIoUCrop, RandomZoomOutCropResize, eval_transform, scale_pixels,
                                     train_transform)

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
        assert image.shape == (3, SIZE, SIZE) and image.dtype == torch.uint8
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
    assert out_image.shape == (3, SIZE, SIZE) and out_image.dtype == torch.uint8
    torch.testing.assert_close(out_image.as_subclass(torch.Tensor), F.resize(image, [SIZE, SIZE], antialias=True)
                               .as_subclass(torch.Tensor), atol=0, rtol=0)  # as the server's pre-processing
    torch.testing.assert_close(out_target["boxes"].as_subclass(torch.Tensor), torch.tensor([[4.8, 4.8, 24.0, 48.0]]))
    assert out_target["labels"].tolist() == [0]


def test_scale_pixels_makes_uint8_images_the_models_float_input():
    images = torch.tensor([0, 1, 128, 254, 255], dtype=torch.uint8).reshape(1, 1, 1, 5).expand(2, 3, 4, 5)
    scaled = scale_pixels(images)
    assert scaled.dtype == torch.float32 and scaled.shape == images.shape
    torch.testing.assert_close(scaled, images.float() / 255)
    assert scaled.min() == 0 and scaled.max() == 1


def test_transforms_pickle_for_spawned_workers():
    for transform in (train_transform(SIZE), eval_transform(SIZE)):
        image, target = pickle.loads(pickle.dumps(transform))(*inputs([[10, 5, 40, 50]]))
        assert image.shape == (3, SIZE, SIZE)


def crop_statistics(crop, seed: int, rounds: int = 1500) -> dict[str, float]:
    """How often ``crop`` leaves the image whole, the windows' mean share of the image, their aspect
    ratios, and the mean number of boxes it keeps (not zeroed) and of those, the best IoU with the window."""
    image, target = inputs([[10, 5, 40, 50], [60, 30, 85, 55], [20, 40, 30, 58]], height=60, width=90)
    torch.manual_seed(seed)
    whole, area, kept, aspects, best = 0, 0.0, 0, [], []
    for _ in range(rounds):
        out_image, out_target = crop(image, target)
        height, width = out_image.shape[-2:]
        if (height, width) == (60, 90):
            whole += 1
            continue
        area += height * width / (60 * 90)
        aspects.append(width / height)
        boxes = out_target["boxes"].as_subclass(torch.Tensor)
        kept += int((boxes.sum(dim=1) > 0).sum())
        best.append(float(box_iou(boxes, torch.tensor([[0.0, 0.0, width, height]])).max()))
    cropped = rounds - whole
    return {"whole": whole / rounds, "area": area / cropped, "kept": kept / cropped,
            "aspect_min": min(aspects), "aspect_max": max(aspects), "best_iou": sum(best) / cropped}


def test_iou_crop_draws_windows_as_torchvisions():
    ours, theirs = crop_statistics(RandomIoUCrop(), 0), crop_statistics(v2.RandomIoUCrop(), 0)
    # left whole: the 1.0 option, 1 pick in 7, and picked again after another option's trials all failed
    assert abs(ours["whole"] - theirs["whole"]) < 0.04 and 0.12 < ours["whole"] < 0.25
    assert abs(ours["area"] - theirs["area"]) < 0.03
    assert abs(ours["kept"] - theirs["kept"]) < 0.1
    assert abs(ours["best_iou"] - theirs["best_iou"]) < 0.03
    assert 0.5 <= ours["aspect_min"] and ours["aspect_max"] <= 2.0


def test_iou_crop_zeroes_the_boxes_whose_centre_it_cuts_away():
    image, target = inputs([[0, 0, 10, 10], [40, 20, 80, 60]], height=60, width=90)
    torch.manual_seed(0)
    seen_zeroed = 0
    for _ in range(200):
        out_image, out_target = RandomIoUCrop()(image, target)
        boxes = out_target["boxes"].as_subclass(torch.Tensor)
        assert boxes.shape == (2, 4) and out_target["labels"].tolist() == [0, 1]
        assert out_target["boxes"].canvas_size == tuple(out_image.shape[-2:])
        seen_zeroed += int((boxes == 0).all(dim=1).sum())
    assert seen_zeroed > 0


def test_iou_crop_passes_an_image_without_boxes_through():
    image, target = inputs([])
    out_image, out_target = RandomIoUCrop()(image, target)
    assert out_image is image and out_target is target


def three_steps(image_shape: int) -> v2.Compose:
    """What RandomZoomOutCropResize folds into one: torchvision's zoom out, our IoU crop, the resize."""
    return v2.Compose([v2.RandomZoomOut(fill=MEAN_PIXEL, side_range=(1.0, 4.0), p=0.5), RandomIoUCrop(),
                       v2.Resize((image_shape, image_shape), antialias=True)])


def test_zoom_out_crop_resize_in_one_step_matches_the_three_steps():
    """Same seed, same draws: the same windows, boxes and region within half an output pixel (the
    image's place is rounded to whole pixels), pixels away from the image's edge within half the step
    from one pixel to the next (a smooth image) and rounding, and the zoom-out colour around it."""
    height, width, size = 75, 100, 60
    rows, columns = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    image = tv_tensors.Image(torch.stack([columns * 128 // width, rows * 128 // height,
                                          (rows + columns) * 128 // (height + width)]).to(torch.uint8))
    boxes = [[10, 8, 40, 60], [60, 20, 96, 74], [2, 2, 8, 7]]
    one_step, reference = RandomZoomOutCropResize(size), three_steps(size)
    zoomed_out = cropped = 0
    for seed in range(150):
        target = inputs(boxes, height, width)[1]
        target["region"] = inputs([[0, 0, width, height]], height, width)[1]["boxes"]
        torch.manual_seed(seed)
        theirs_image, theirs = reference(image, target)
        torch.manual_seed(seed)
        ours_image, ours = one_step(image, target)
        assert ours_image.shape == theirs_image.shape == (3, size, size) and ours_image.dtype == torch.uint8
        assert ours["boxes"].canvas_size == (size, size)
        zeroed = (theirs["boxes"] == 0).all(dim=1)
        assert ((ours["boxes"] == 0).all(dim=1) == zeroed).all()  # the same boxes cut away
        torch.testing.assert_close(ours["boxes"].as_subclass(torch.Tensor), theirs["boxes"].as_subclass(torch.Tensor),
                                   atol=0.5, rtol=0)
        torch.testing.assert_close(ours["region"].as_subclass(torch.Tensor),
                                   theirs["region"].as_subclass(torch.Tensor), atol=0.5, rtol=0)
        x0, y0, x1, y1 = (int(v) for v in ours["region"].reshape(4).tolist())  # whole pixels
        inner = (slice(None), slice(y0 + 2, y1 - 2), slice(x0 + 2, x1 - 2))
        difference = (ours_image.int() - theirs_image.int()).abs()[inner]
        step = max(theirs_image.int()[inner].diff(dim=1).abs().max(), theirs_image.int()[inner].diff(dim=2).abs().max())
        assert difference.max() <= step / 2 + 1.5, seed  # at most half a pixel's step, and rounding
        around = torch.ones(size, size, dtype=torch.bool)
        around[y0:y1, x0:x1] = False
        assert (ours_image[:, around] == torch.tensor(MEAN_PIXEL, dtype=torch.uint8)[:, None]).all()
        zoomed_out += bool(around.any())
        cropped += bool((theirs["boxes"] == 0).all(dim=1).any()) or (x1 - x0) * (y1 - y0) > size * size
    assert zoomed_out > 30 and cropped > 30  # both paths taken


def test_train_transform_says_where_the_image_lies_on_the_zoom_out_canvas():
    """A white image: inside the region the output is white, around it the canvas's mean colour (the
    resize blends the pixels along the edge)."""
    torch.manual_seed(0)
    transform = train_transform(SIZE)
    white = tv_tensors.Image(torch.full((3, 60, 90), 255, dtype=torch.uint8))
    canvas = torch.tensor(MEAN_PIXEL, dtype=torch.uint8)[:, None]
    smaller = 0
    for _ in range(60):
        image, target = transform(white, inputs([[10, 5, 40, 50]])[1])
        x0, y0, x1, y1 = target["region"].reshape(4).tolist()
        assert -1e-3 <= x0 < x1 <= SIZE + 1e-3 and -1e-3 <= y0 < y1 <= SIZE + 1e-3
        inside = torch.zeros(SIZE, SIZE, dtype=torch.bool)
        inside[math.ceil(y0) + 1:math.floor(y1) - 1, math.ceil(x0) + 1:math.floor(x1) - 1] = True
        outside = torch.ones(SIZE, SIZE, dtype=torch.bool)
        outside[max(0, math.floor(y0) - 1):math.ceil(y1) + 1, max(0, math.floor(x0) - 1):math.ceil(x1) + 1] = False
        assert (image[:, inside] == 255).all()
        torch.testing.assert_close(image[:, outside].as_subclass(torch.Tensor), canvas.expand(3, int(outside.sum())),
                                   atol=1, rtol=0)
        smaller += (x1 - x0) * (y1 - y0) < SIZE * SIZE - 1
    assert smaller > 10  # zoomed out or cropped to less than the frame


def test_eval_transform_leaves_the_region_to_the_dataset():
    image, target = inputs([[9, 6, 45, 60]])
    assert "region" not in eval_transform(SIZE)(image, target)[1]
