import io

import numpy as np
import pytest
import torch
from PIL import Image

from sagedet.data.dataset import Batch, DetectionDataset, Sample, SampleError, check_batch, collate
from sagedet.data.imagejson import ImageJsonSource
from sagedet.data.sample import Objects, RawSample
from sagedet.data.transforms import eval_transform, train_transform
from sagedet.errors import DataError


def encode(image: Image.Image, image_format: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return buffer.getvalue()


def objects(boxes=(), labels=()) -> Objects:
    return Objects(np.array(boxes, dtype=np.float32).reshape(-1, 4), np.array(labels, dtype=np.int64))


class MemorySource:
    """A SampleSource over in-memory (name, bytes, objects) triples."""

    class_names: dict[int, str] = {}

    def __init__(self, *samples: tuple[str, bytes, Objects]) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def name(self, index: int) -> str:
        return self.samples[index][0]

    def read(self, index: int) -> RawSample:
        return RawSample(*self.samples[index])


RED = encode(Image.new("RGB", (100, 50), (255, 0, 0)))


def test_decodes_and_renormalizes_boxes():
    source = MemorySource(("train/a.jpg", RED, objects([[0.1, 0.2, 0.5, 1.0]], [2])))
    sample = DetectionDataset(source, eval_transform(32))[0]

    assert isinstance(sample, Sample)
    assert sample.name == "train/a.jpg"
    assert sample.image.shape == (3, 32, 32) and sample.image.dtype == torch.uint8  # scaled on the device
    assert type(sample.image) is torch.Tensor and type(sample.boxes) is torch.Tensor
    assert sample.image[0].float().mean() > 240 and sample.image[1].float().mean() < 20
    torch.testing.assert_close(sample.boxes, torch.tensor([[0.1, 0.2, 0.5, 1.0]]))
    assert sample.labels.tolist() == [2] and sample.labels.dtype == torch.int64
    assert sample.region.tolist() == [0.0, 0.0, 1.0, 1.0]  # no zoom out: the whole frame


def test_the_training_transforms_region_is_normalized_like_the_boxes():
    source = MemorySource(("a", RED, objects([[0.1, 0.2, 0.5, 1.0]], [2])))
    torch.manual_seed(0)
    regions = torch.stack([DetectionDataset(source, train_transform(32))[0].region for _ in range(30)])
    assert regions.shape == (30, 4) and regions.min() > -1e-4 and regions.max() < 1 + 1e-4
    assert (regions[:, 2] > regions[:, 0]).all() and (regions[:, 3] > regions[:, 1]).all()
    assert (regions != torch.tensor([0.0, 0.0, 1.0, 1.0])).any(dim=1).sum() > 5


def test_sample_without_objects():
    sample = DetectionDataset(MemorySource(("a", RED, objects())), train_transform(32))[0]
    assert sample.boxes.shape == (0, 4) and sample.labels.shape == (0,)


def test_exif_orientation_is_not_applied():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° when displayed
    buffer = io.BytesIO()
    Image.new("RGB", (100, 50)).save(buffer, format="JPEG", exif=exif)
    dataset = DetectionDataset(MemorySource(("a", buffer.getvalue(), objects())), lambda image, target: (image, target))
    assert dataset[0].image.shape == (3, 50, 100)


def truncated_jpeg() -> bytes:
    noise = np.random.default_rng(0).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    data = encode(Image.fromarray(noise))
    return data[: len(data) // 2]


def test_truncated_jpeg_is_reported_by_name(tmp_path):
    """The header reads, so indexing passes; decoding in the worker fails and the main process raises."""
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "cut.jpg").write_bytes(truncated_jpeg())
    (tmp_path / "train_annotation").mkdir()
    (tmp_path / "train_annotation" / "cut.json").write_text(
        '{"file": "cut.jpg", "image_size": [{"width": 64, "height": 64, "depth": 3}], "annotations": []}'
    )
    source = ImageJsonSource(tmp_path / "train", tmp_path / "train_annotation", 1, "train")
    error = DetectionDataset(source, eval_transform(32))[0]

    assert isinstance(error, SampleError)
    assert error.name == "train/cut.jpg"
    assert error.reason.startswith("does not decode: ")
    with pytest.raises(DataError, match=r"^train/cut\.jpg: does not decode: .*truncated"):
        check_batch(collate([error]))


def test_grayscale_png_is_reported_by_name():
    gray = encode(Image.new("L", (20, 20)), "PNG")
    source = MemorySource(("train/ok.jpg", RED, objects()), ("train/gray.png", gray, objects()))
    dataset = DetectionDataset(source, eval_transform(16))
    batch = collate([dataset[0], dataset[1]])

    reason = "has 1 channel(s) (PIL mode L); only 3-channel RGB images are supported"
    assert batch == SampleError("train/gray.png", reason)
    with pytest.raises(DataError, match=r"^train/gray\.png: has 1 channel\(s\) \(PIL mode L\); only 3-channel RGB"):
        check_batch(batch)


def test_unreadable_file_becomes_a_sample_error():
    class Vanishing(MemorySource):
        def read(self, index):
            raise FileNotFoundError(2, "No such file or directory", "/data/a.jpg")

    error = DetectionDataset(Vanishing(("train/a.jpg", b"", objects())), eval_transform(16))[0]
    assert error.name == "train/a.jpg" and error.reason.startswith("cannot be read: ")


def make_sample(name: str, count: int, size: int = 8) -> Sample:
    return Sample(
        name,
        torch.rand(3, size, size),
        torch.rand(count, 4),
        torch.arange(count, dtype=torch.int64),
        torch.tensor([0.0, 0.1, 0.9, 1.0]) * torch.rand(1),
    )


def test_collate_pads_boxes_with_zero_and_labels_with_minus_one():
    samples = [make_sample("a", 0), make_sample("b", 2), make_sample("c", 1)]
    batch = check_batch(collate(samples))

    assert batch.images.shape == (3, 3, 8, 8)
    assert batch.boxes.shape == (3, 2, 4) and batch.boxes.dtype == torch.float32
    assert batch.labels.shape == (3, 2) and batch.labels.dtype == torch.int64
    assert batch.labels.tolist() == [[-1, -1], [0, 1], [0, -1]]
    torch.testing.assert_close(batch.boxes[1], samples[1].boxes)
    assert batch.boxes[0].eq(0).all() and batch.boxes[2, 1].eq(0).all()
    assert batch.names == ["a", "b", "c"]
    torch.testing.assert_close(batch.regions, torch.stack([sample.region for sample in samples]))


def test_collate_keeps_one_slot_when_no_sample_has_objects():
    batch = collate([make_sample("a", 0), make_sample("b", 0)])
    assert batch.boxes.shape == (2, 1, 4)
    assert batch.labels.tolist() == [[-1], [-1]]


def test_batch_to_device():
    batch = collate([make_sample("a", 1)])
    moved = batch.to("cpu", non_blocking=True)
    assert isinstance(moved, Batch) and moved.names == ["a"]
    assert torch.equal(moved.images, batch.images)
    assert torch.equal(moved.regions, batch.regions)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinning memory needs CUDA")
def test_batch_pin_memory():
    assert collate([make_sample("a", 1)]).pin_memory().images.is_pinned()


def test_dataloader_workers_return_batches_and_errors():
    gray = encode(Image.new("L", (20, 20)), "PNG")
    source = MemorySource(
        ("a", RED, objects([[0, 0, 1, 1]], [0])), ("b", RED, objects()), ("gray", gray, objects())
    )
    loader = torch.utils.data.DataLoader(
        DetectionDataset(source, train_transform(32)), batch_size=2, num_workers=1, collate_fn=collate
    )
    first, second = list(loader)
    assert check_batch(first).images.shape == (2, 3, 32, 32)
    with pytest.raises(DataError, match="^gray: has 1 channel"):
        check_batch(second)
