"""make_pipeline: sizes and steps, exact shuffling, normalisation, stateless resume, ZCA caching,
ImageNet through ImageFolder, and every batch on its device. (That the generated data is learnable
is in test_fake.py.)"""

import dataclasses

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

from wrn.config import RunConfig, resolve
from wrn.data import preprocess
from wrn.data.datasets import load_arrays
from wrn.data.fake import write_fake_dataset
from wrn.data.layout import data_cache_dir
from wrn.data.pipeline import epoch_permutation
from wrn.data.tensor_pipeline import make_pipeline
from wrn.errors import DataError

N_TRAIN, N_TEST = 300, 50


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_fake_dataset("cifar10", root, N_TRAIN, N_TEST, seed=0)
    write_fake_dataset("svhn", root, N_TRAIN, N_TEST, seed=0)
    write_fake_dataset("imagenet", root, 40, 20, seed=0)
    return root


def cifar(**overrides):
    return resolve(RunConfig(**{"dataset": "cifar10", "preprocessing": "meanstd", "depth": 16, "k": 1,
                                "batch_size": 64, "eval_batch_size": 16, **overrides}))


def imagenet(**overrides):
    return resolve(RunConfig(**{"dataset": "imagenet", "arch": "wrn50_2_bottleneck", "depth": 50, "k": 2,
                                "batch_size": 8, "eval_batch_size": 6, "image_size": 24, **overrides}))


def collect(batches):
    return [(x.clone(), y.clone()) for x, y in batches]


def assert_same(a, b):
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


@pytest.mark.parametrize("drop_last, steps, last", [(True, 4, 64), (False, 5, 300 - 4 * 64)])
def test_steps_per_epoch_follow_drop_last(root, drop_last, steps, last):
    p = make_pipeline(cifar(drop_last=drop_last), root, "cpu", download=False)
    assert (p.train_size, p.test_size, p.num_classes, p.source) == (N_TRAIN, N_TEST, 10, "manifest")
    assert p.steps_per_epoch == steps
    batches = collect(p.train_batches(1))
    assert len(batches) == steps and len(batches[-1][1]) == last
    for x, y in batches:
        assert x.dtype == torch.float32 and x.shape[1:] == (3, 32, 32) and y.dtype == torch.int64


def test_test_batches_keep_the_last_partial_batch_in_order(root):
    p = make_pipeline(cifar(), root, "cpu", download=False)
    batches = collect(p.test_batches())
    assert [len(y) for _, y in batches] == [16, 16, 16, 2]
    data = load_arrays("cifar10", root, download=False)
    assert torch.equal(torch.cat([y for _, y in batches]), data.test_y)
    mean = torch.tensor(preprocess.OFFICIAL_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(preprocess.OFFICIAL_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(torch.cat([x for x, _ in batches]), (data.test_x.float() - mean) / std)


def test_epoch_is_the_seeded_permutation_without_repeats(root):
    """Without augmentation each batch is exactly the permuted, normalised training images."""
    cfg = cifar(crop_padding=0, hflip=False, preprocessing="div255")
    p = make_pipeline(cfg, root, "cpu", download=False)
    data = load_arrays("cifar10", root, download=False)
    perm = epoch_permutation(N_TRAIN, cfg.seed, 3)
    seen = []
    for step, (x, y) in enumerate(p.train_batches(3)):
        idx = perm[step * 64:(step + 1) * 64]
        torch.testing.assert_close(x, data.train_x[idx].float() / 255)
        assert torch.equal(y, data.train_y[idx])
        seen += idx.tolist()
    assert len(seen) == len(set(seen)) == 4 * 64


def test_batches_are_deterministic_and_depend_on_seed_and_epoch(root):
    p = make_pipeline(cifar(), root, "cpu", download=False)
    first = collect(p.train_batches(1))
    assert_same(first, collect(make_pipeline(cifar(), root, "cpu", download=False).train_batches(1)))
    assert not torch.equal(first[0][0], collect(p.train_batches(2))[0][0])
    other_seed = make_pipeline(cifar(seed=1, data_order="per_seed"), root, "cpu", download=False)
    assert not torch.equal(collect(make_pipeline(cifar(data_order="per_seed"), root, "cpu", download=False)
                                   .train_batches(1))[0][0], collect(other_seed.train_batches(1))[0][0])


def test_runs_of_one_seed_see_the_same_data_whatever_the_network(root):
    """What pairs an ablation's runs by seed: the data order, crops and flips of a seed do not depend on
    the network, its dropout, its optimisation or its systems settings."""
    base = collect(make_pipeline(cifar(seed=3), root, "cpu", download=False).train_batches(2))
    for variant in (dict(depth=40, k=2, block="B(1,3,1)"), dict(k=4, dropout=True), dict(lr=0.05, nesterov=False),
                    dict(precision="bf16", channels_last="on")):
        assert_same(collect(make_pipeline(cifar(seed=3, **variant), root, "cpu", download=False).train_batches(2)), base)


def test_a_shared_data_order_gives_every_seed_the_same_batches(root):
    """The v2 code's order (train.lua reseeds its data threads with the epoch alone): every seed sees
    the same order, crops and flips, epoch by epoch; the per-seed order differs between seeds."""
    shared = [collect(make_pipeline(cifar(seed=s, data_order="shared"), root, "cpu", download=False).train_batches(2))
              for s in (0, 4)]
    assert_same(*shared)
    assert not torch.equal(shared[0][0][0], collect(make_pipeline(cifar(seed=0, data_order="shared"), root, "cpu",
                                                                   download=False).train_batches(3))[0][0])
    per_seed = [collect(make_pipeline(cifar(seed=s, data_order="per_seed"), root, "cpu", download=False).train_batches(2))
                for s in (0, 4)]
    assert not torch.equal(per_seed[0][0][0], per_seed[1][0][0])


def test_pixel_mean_subtracts_the_training_sets_mean_image_before_zero_padding(root):
    """He et al.'s preprocessing: x - the training set's mean image on the 0-255 scale, stored once;
    the zero padding of the crop is then the mean image's colour."""
    cfg = cifar(preprocessing="pixelmean", pad_mode="zeros", hflip=False, drop_last=False)
    p = make_pipeline(cfg, root, "cpu", download=False)
    data = load_arrays("cifar10", root, download=False)
    mean = data.train_x.double().mean(0)
    assert p.normalize is None and p.train_x.dtype == torch.float32
    assert torch.allclose(p.train_x.double(), data.train_x.double() - mean, atol=1e-4)
    assert torch.allclose(p.test_x.double(), data.test_x.double() - mean, atol=1e-4)  # the training set's mean
    assert abs(float(p.train_x.double().mean(0).abs().max())) < 1e-4
    # crops that moved show the padding: exactly 0 in the stored space (the mean's colour), where a
    # reflected border, or padding before the subtraction (-mean), would leave as few zeros as the images
    zeros = {mode: sum(int((x == 0).sum()) for x, _ in make_pipeline(dataclasses.replace(cfg, pad_mode=mode), root,
                                                                    "cpu", download=False).train_batches(1))
             for mode in ("zeros", "reflect")}
    assert zeros["zeros"] > zeros["reflect"] + 32 * 3


@pytest.mark.parametrize("pad_mode", ["reflect", "zeros"])
def test_resume_at_any_step_is_exact(root, pad_mode):
    p = make_pipeline(cifar(pad_mode=pad_mode, drop_last=False), root, "cpu", download=False)
    full = collect(p.train_batches(5))
    for start in range(p.steps_per_epoch + 1):
        assert_same(collect(p.train_batches(5, start_step=start)), full[start:])


def test_augmentation_is_on_for_cifar_and_off_for_svhn(root):
    augmented = make_pipeline(cifar(), root, "cpu", download=False)
    plain = make_pipeline(cifar(crop_padding=0, hflip=False), root, "cpu", download=False)
    (xa, ya), (xp, yp) = next(iter(augmented.train_batches(1))), next(iter(plain.train_batches(1)))
    assert torch.equal(ya, yp) and not torch.equal(xa, xp)  # same images, different crops/flips

    svhn = resolve(RunConfig(dataset="svhn", depth=16, k=1, batch_size=64))
    assert (svhn.crop_padding, svhn.hflip, svhn.preprocessing) == (0, False, "div255")
    p = make_pipeline(svhn, root, "cpu", download=False)
    assert p.augment is None
    data = load_arrays("svhn", root, download=False)
    x, y = next(iter(p.train_batches(0)))
    idx = epoch_permutation(N_TRAIN, svhn.seed, 0)[:64]
    assert torch.equal(x, data.train_x[idx].float() / 255) and torch.equal(y, data.train_y[idx])


def test_zca_pipeline_whitens_once_and_reuses_the_cache(root, monkeypatch):
    cfg = cifar(preprocessing="zca")
    p = make_pipeline(cfg, root, "cpu", download=False)
    assert p.train_x.dtype == torch.float32 and p.normalize is None
    assert len(list(data_cache_dir(root).glob("zca-*.pt"))) == 1
    x, _ = next(iter(p.test_batches()))
    assert x.dtype == torch.float32 and abs(float(x.mean())) < 0.1

    def refit(*args, **kwargs):
        raise AssertionError("ZCA was refitted although it is cached")
    monkeypatch.setattr(preprocess, "fit_zca", refit)
    again = make_pipeline(cfg, root, "cpu", download=False)
    assert torch.equal(again.train_x, p.train_x)


def test_imagenet_pipeline_interface_and_resume(root):
    cfg = imagenet()
    p = make_pipeline(cfg, root, "cpu", download=False, workers=0)
    assert (p.train_size, p.test_size, p.num_classes, p.steps_per_epoch) == (40, 20, 1000, 5)
    full = collect(p.train_batches(2))
    assert len(full) == 5 and all(x.shape == (8, 3, 24, 24) and x.dtype == torch.float32 for x, _ in full)
    assert_same(collect(p.train_batches(2, start_step=3)), full[3:])
    assert_same(collect(p.train_batches(2)), full)  # per-image seeding: RandomResizedCrop repeats
    test = collect(p.test_batches())
    assert [len(y) for _, y in test] == [6, 6, 6, 2] and test[0][0].shape[1:] == (3, 24, 24)


def test_bad_arguments(root):
    p = make_pipeline(cifar(), root, "cpu", download=False)
    with pytest.raises(ValueError, match=r"start_step=5: expected an integer in 0..4"):
        next(iter(p.train_batches(1, start_step=5)))
    with pytest.raises(DataError, match="fewer than batch_size=512"):
        make_pipeline(cifar(batch_size=512), root, "cpu", download=False)
    with pytest.raises(ValueError, match="resolved RunConfig"):
        make_pipeline(dataclasses.replace(cifar(), preprocessing=None), root, "cpu")


class RefuseMixedDevices(TorchFunctionMode):
    """Fails every torch call whose tensors sit on different devices, but for explicit copies and a 0-dim
    CPU tensor (which CUDA takes as a number). On CUDA such a call is an error or a hidden copy that
    waits for the device; on the meta device it would often pass unnoticed."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__name__", "") not in ("to", "copy_"):
            tensors = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
            devices = {t.device.type for t in tensors if not (t.device.type == "cpu" and t.dim() == 0)}
            assert len(devices) <= 1, f"{getattr(func, '__name__', func)} mixes devices {sorted(devices)}"
        return func(*args, **kwargs)


@pytest.mark.parametrize("dataset, overrides", [
    ("cifar10", {}), ("cifar10", {"pad_mode": "zeros", "recipe": "he-2016"}),
    ("cifar10", {"recipe": "v1-2016-05", "preprocessing": "zca"}), ("svhn", {}),
    ("cifar10", {"world_size": 2, "batch_size": 64}),
])
def test_the_tensor_pipeline_keeps_every_batch_on_its_device(root, dataset, overrides):
    """The pipeline built for the meta device (shapes, no values) yields every training and test batch
    there, without a call that mixes a device tensor with a CPU one on the way."""
    cfg = resolve(RunConfig(**{"dataset": dataset, "depth": 16, "k": 1, "batch_size": 64, "eval_batch_size": 16,
                               **overrides}))
    make_pipeline(cfg, root, "cpu", download=False)  # a ZCA fit is cached here; meta tensors hold no values
    with RefuseMixedDevices():
        meta = make_pipeline(cfg, root, "meta", download=False, rank=cfg.world_size - 1)
        batches = list(meta.train_batches(1)) + list(meta.test_batches())
    assert len(batches) == meta.steps_per_epoch + -(-(N_TEST // cfg.world_size) // 16)
    for x, y in batches:
        assert x.device.type == y.device.type == "meta" and x.dtype == torch.float32 and y.dtype == torch.int64
