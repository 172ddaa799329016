"""SSD's photometric distortion on whole batches (sagedet.data.batch_photometric) against torchvision's."""

import torch
from torchvision.transforms.v2 import RandomPhotometricDistort
from torchvision.transforms.v2 import functional as F

from sagedet.data.batch_photometric import BatchPhotometricDistortion, distort


def images(count: int = 12, seed: int = 1) -> torch.Tensor:
    batch = torch.rand(count, 3, 24, 20, generator=torch.Generator().manual_seed(seed))
    batch[0] = batch[0, :1]  # a gray image: no hue
    batch[1, :, :6] = 0.5  # a flat gray band
    batch[2, 0], batch[2, 1] = batch[2, 2], 0.0  # red equal to blue, the largest in places
    batch[3] = torch.tensor([1.0, 0.0, 0.0])[:, None, None]  # pure red
    return batch


def torchvision_distortion(image: torch.Tensor, parameters, i: int) -> torch.Tensor:
    """torchvision's functional ops, one image, in RandomPhotometricDistort's order."""
    image = F.adjust_brightness(image, float(parameters.brightness[i]))
    image = F.adjust_contrast(image, float(parameters.contrast_before[i]))
    image = F.adjust_saturation(image, float(parameters.saturation[i]))
    if parameters.hue[i] != 0:
        image = F.adjust_hue(image, float(parameters.hue[i]))
    image = F.adjust_contrast(image, float(parameters.contrast_after[i]))
    return F.permute_channels(image, parameters.permutation[i].tolist())


def test_the_batch_is_distorted_as_torchvision_distorts_each_image():
    batch = images()
    for seed in range(4):
        parameters = BatchPhotometricDistortion(p=0.8, generator=torch.Generator().manual_seed(seed)).sample(
            len(batch), batch.device)
        ours = distort(batch, parameters)
        for i, image in enumerate(batch):
            torch.testing.assert_close(ours[i], torchvision_distortion(image, parameters, i), atol=1e-5, rtol=0)
        assert (ours != batch).any() and 0 <= ours.min() and ours.max() <= 1


def test_every_hue_shift_matches_torchvisions():
    batch = images()
    for shift in (-0.5, -0.31, -0.05, 0.02, 0.17, 0.5):
        parameters = BatchPhotometricDistortion(p=0.0).sample(len(batch), batch.device)
        parameters = type(parameters)(**{**parameters.__dict__, "hue": torch.full((len(batch),), shift)})
        expected = torch.stack([F.adjust_hue(image, shift) for image in batch])
        torch.testing.assert_close(distort(batch, parameters), expected, atol=1e-5, rtol=0)


def test_the_changes_are_drawn_per_image_as_torchvision_draws_them():
    count = 4000
    distortion = BatchPhotometricDistortion(generator=torch.Generator().manual_seed(0))
    parameters = distortion.sample(count, torch.device("cpu"))
    peer = RandomPhotometricDistort()
    torch.manual_seed(0)
    theirs = [peer.make_params([torch.zeros(3, 2, 2)]) for _ in range(count)]
    ours_share = {
        "brightness": (parameters.brightness != 1).float().mean(),
        "contrast": ((parameters.contrast_before != 1) | (parameters.contrast_after != 1)).float().mean(),
        "contrast_before": (parameters.contrast_before != 1).float().mean(),
        "saturation": (parameters.saturation != 1).float().mean(),
        "hue": (parameters.hue != 0).float().mean(),
        "permuted": (parameters.permutation != torch.arange(3)).any(dim=1).float().mean(),
    }
    their_share = {
        "brightness": sum(t["brightness_factor"] is not None for t in theirs) / count,
        "contrast": sum(t["contrast_factor"] is not None for t in theirs) / count,
        "contrast_before": sum(t["contrast_factor"] is not None and t["contrast_before"] for t in theirs) / count,
        "saturation": sum(t["saturation_factor"] is not None for t in theirs) / count,
        "hue": sum(t["hue_factor"] is not None for t in theirs) / count,
        "permuted": sum(t["channel_permutation"] is not None and t["channel_permutation"].tolist() != [0, 1, 2]
                        for t in theirs) / count,
    }
    for key, share in ours_share.items():
        assert abs(float(share) - their_share[key]) < 0.04, (key, float(share), their_share[key])
    assert 0.45 < ours_share["brightness"] < 0.55 and 0.22 < ours_share["contrast_before"] < 0.28
    assert 0.37 < ours_share["permuted"] < 0.46  # half the time a permutation, 5 in 6 of them not the identity
    drawn = parameters.brightness != 1
    assert parameters.brightness[drawn].min() >= 0.875 and parameters.brightness[drawn].max() <= 1.125
    assert parameters.hue.abs().max() <= 0.05 and parameters.hue.abs().max() > 0.045
    for factor in (parameters.contrast_before, parameters.contrast_after, parameters.saturation):
        assert 0.5 <= factor.min() < 0.55 and 1.45 < factor.max() <= 1.5
    assert not ((parameters.contrast_before != 1) & (parameters.contrast_after != 1)).any()


def test_computing_every_image_as_on_a_gpu_gives_the_same_batch():
    batch = images()
    parameters = BatchPhotometricDistortion(generator=torch.Generator().manual_seed(3)).sample(len(batch), batch.device)
    only_drawn = distort(batch, parameters)
    assert torch.equal(only_drawn, distort(batch, parameters, every_image=False))
    torch.testing.assert_close(distort(batch, parameters, every_image=True), only_drawn, atol=1e-6, rtol=0)


def test_nothing_drawn_leaves_the_batch_as_it_is():
    batch = images()
    assert torch.equal(BatchPhotometricDistortion(p=0.0)(batch), batch)


def test_the_generator_decides_the_distortion():
    batch = images()
    first = BatchPhotometricDistortion(generator=torch.Generator().manual_seed(5))(batch)
    again = BatchPhotometricDistortion(generator=torch.Generator().manual_seed(5))(batch)
    other = BatchPhotometricDistortion(generator=torch.Generator().manual_seed(6))(batch)
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_only_each_images_region_is_distorted():
    batch = images(4)
    regions = torch.tensor([[0.0, 0.0, 0.5, 1.0], [0.25, 0.5, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0], [0.1, 0.1, 0.9, 0.6]])
    parameters = BatchPhotometricDistortion(p=0.9, generator=torch.Generator().manual_seed(4)).sample(4, batch.device)
    ours = distort(batch, parameters, regions=regions)
    for i in range(4):  # pixels whose centre is in the region: columns and rows below, 24 rows by 20 columns
        x0, y0, x1, y1 = (regions[i] * torch.tensor([20, 24, 20, 24])).round().int().tolist()
        inside = torch.zeros(24, 20, dtype=torch.bool)
        inside[y0:y1, x0:x1] = True
        assert torch.equal(ours[i][:, ~inside], batch[i][:, ~inside])
        # the region distorted as if it were the whole image: contrast towards the mean of its own pixels
        alone = distort(batch[i:i + 1, :, y0:y1, x0:x1], type(parameters)(
            **{key: value[i:i + 1] for key, value in parameters.__dict__.items()}))
        torch.testing.assert_close(ours[i, :, y0:y1, x0:x1], alone[0], atol=1e-6, rtol=0)
        assert not torch.equal(ours[i, :, y0:y1, x0:x1], batch[i, :, y0:y1, x0:x1])
    for every_image in (True, False):
        torch.testing.assert_close(distort(batch, parameters, every_image, regions), ours, atol=1e-6, rtol=0)
