"""The batched pad-crop-flip: equal to pad + slice + flip image by image, offsets uniform over
0..2*pad, flips at rate 1/2, zero padding applied after normalisation, deterministic in its seed."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from wrn.data.augment import CropFlip


def reference(images, dy, dx, flips, padding, pad_mode, normalize=None):
    """What the official Lua/PyTorch code does per image: normalise, pad, crop, flip."""
    images = images.float() if normalize is None else normalize(images)
    mode = "reflect" if pad_mode == "reflect" else "constant"
    padded = F.pad(images, (padding,) * 4, mode=mode)
    h, w = images.shape[-2:]
    out = []
    for img, y, x, f in zip(padded, dy.tolist(), dx.tolist(), flips.tolist()):
        crop = img[:, y:y + h, x:x + w]
        out.append(crop.flip(-1) if f else crop)
    return torch.stack(out)


def normalize(x):
    return (x.float() - 100.0) / 50.0


@pytest.mark.parametrize("pad_mode", ["reflect", "zeros"])
@pytest.mark.parametrize("padding, size", [(2, (6, 7)), (4, (32, 32)), (0, (5, 5))])
def test_every_outcome_equals_pad_crop_flip(pad_mode, padding, size):
    h, w = size
    aug = CropFlip(h, w, padding, pad_mode, hflip=True)
    outcomes = list(itertools.product(range(2 * padding + 1), range(2 * padding + 1), (False, True)))
    dy, dx, flips = (torch.tensor(v) for v in zip(*outcomes))
    images = torch.randint(0, 256, (len(outcomes), 3, h, w), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    out = aug.apply(images, dy, dx, flips, normalize=normalize)
    assert out.dtype == torch.float32 and out.shape == images.shape
    expected = reference(images, dy, dx, flips, padding, pad_mode, normalize)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_zero_padding_is_zero_after_normalisation():
    """The Lua code pads the normalised image: padded pixels are 0, not a normalised black."""
    aug = CropFlip(4, 4, 2, "zeros", hflip=False)
    images = torch.full((1, 3, 4, 4), 200, dtype=torch.uint8)
    out = aug.apply(images, torch.tensor([0]), torch.tensor([0]), torch.tensor([False]), normalize)
    assert torch.all(out[0, :, :2, :] == 0) and torch.all(out[0, :, :, :2] == 0)
    assert torch.all(out[0, :, 2:, 2:] == normalize(torch.tensor(200)))


def test_float_images_without_normaliser():
    """ZCA data is stored as floats and needs no normaliser."""
    aug = CropFlip(8, 8, 3, "reflect", hflip=True)
    images = torch.randn(4, 3, 8, 8)
    dy, dx = torch.tensor([0, 6, 3, 1]), torch.tensor([6, 0, 3, 2])
    flips = torch.tensor([True, False, True, False])
    torch.testing.assert_close(aug.apply(images, dy, dx, flips),
                               reference(images, dy, dx, flips, 3, "reflect"))


def test_offsets_are_uniform_over_0_to_8():
    aug = CropFlip(32, 32, 4, "reflect", hflip=True)
    n = 90_000
    dy, dx, _ = aug.draw(n, torch.Generator().manual_seed(1))
    for offsets in (dy, dx):
        assert int(offsets.min()) == 0 and int(offsets.max()) == 8
        counts = torch.bincount(offsets, minlength=9).double()
        chi2 = float(((counts - n / 9) ** 2 / (n / 9)).sum())
        assert chi2 < 26.12  # chi-square, 8 degrees of freedom, p = 0.001
    joint = torch.bincount(dy * 9 + dx, minlength=81).double()  # the two axes are independent
    assert float(((joint - n / 81) ** 2 / (n / 81)).sum()) < 124.84  # 80 dof, p = 0.001


def test_flip_rate_is_one_half():
    aug = CropFlip(32, 32, 4, "reflect", hflip=True)
    n = 40_000
    _, _, flips = aug.draw(n, torch.Generator().manual_seed(2))
    assert abs(flips.double().mean().item() - 0.5) < 4 * (0.25 / n) ** 0.5


def test_drawn_offsets_reach_the_output():
    """End to end through __call__: the centre pixel tells which crop each image got."""
    aug = CropFlip(32, 32, 4, "reflect", hflip=False)
    n = 9_000
    coords = torch.arange(32 * 32, dtype=torch.float32).view(1, 1, 32, 32).expand(n, 3, 32, 32)
    out = aug(coords, torch.Generator().manual_seed(3))
    dy, dx, _ = aug.draw(n, torch.Generator().manual_seed(3))
    centre = out[:, 0, 16, 16].long()
    assert torch.equal(centre // 32, 12 + dy) and torch.equal(centre % 32, 12 + dx)
    counts = torch.bincount(centre // 32 - 12, minlength=9)
    assert counts.min() > 0.8 * n / 9 and counts.max() < 1.2 * n / 9


def test_same_generator_seed_same_batch():
    aug = CropFlip(32, 32, 4, "zeros", hflip=True)
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    a = aug(images, torch.Generator().manual_seed(7), normalize)
    b = aug(images, torch.Generator().manual_seed(7), normalize)
    c = aug(images, torch.Generator().manual_seed(8), normalize)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_identity_and_bad_arguments():
    assert CropFlip(32, 32, 0, "reflect", hflip=False).is_identity
    assert not CropFlip(32, 32, 0, "reflect", hflip=True).is_identity
    with pytest.raises(ValueError, match="pad_mode"):
        CropFlip(32, 32, 4, "symmetric")
    with pytest.raises(ValueError, match="crop_padding=32"):
        CropFlip(32, 32, 32, "reflect")
    with pytest.raises(ValueError, match="built for 32x32"):
        CropFlip(32, 32, 4)(torch.zeros(1, 3, 28, 28), torch.Generator())
