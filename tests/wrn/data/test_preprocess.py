"""Normalisation constants and pylearn2's GCN + ZCA, checked against a float64 numpy reference
written here from pylearn2's code (expr/preprocessing.py global_contrast_normalize, datasets/
preprocessing.py ZCA.fit/apply), and the on-disk cache of the ZCA fit."""

import numpy as np
import pytest
import torch

from wrn.config import RunConfig, resolve
from wrn.data import preprocess
from wrn.data.datasets import load_arrays
from wrn.data.fake import write_fake_dataset
from wrn.data.preprocess import (
    OFFICIAL_MEAN,
    OFFICIAL_STD,
    channel_stats,
    fit_zca,
    global_contrast_normalize,
    make_normalizer,
    zca_cache_path,
    zca_transform,
    zca_whiten,
)
from wrn.data.tensor_pipeline import make_pipeline


# --- numpy reference (pylearn2 semantics, float64) ------------------------------------------------
def ref_gcn(x, scale=55.0, min_divisor=1e-8):
    x = x - x.mean(axis=1)[:, None]
    normalizers = np.sqrt((x ** 2).sum(axis=1)) / scale
    normalizers[normalizers < min_divisor] = 1.0
    return x / normalizers[:, None]


def ref_zca_fit(x, filter_bias=0.1):
    mean = x.mean(axis=0)
    xc = x - mean
    cov = xc.T @ xc / x.shape[0] + filter_bias * np.eye(x.shape[1])
    eigs, eigv = np.linalg.eigh(cov)
    assert eigs.min() > 0
    return mean, (eigv * (1.0 / np.sqrt(eigs))) @ eigv.T


def ref_whiten(train_u8, test_u8):
    flat = lambda a: a.reshape(len(a), -1).astype(np.float64)  # noqa: E731
    mean, p = ref_zca_fit(ref_gcn(flat(train_u8)))
    return [(ref_gcn(flat(a)) - mean) @ p for a in (train_u8, test_u8)]


# --- meanstd / div255 -----------------------------------------------------------------------------
def test_official_constants():
    assert OFFICIAL_MEAN == (125.3, 123.0, 113.9)
    assert OFFICIAL_STD == (63.0, 62.1, 66.7)


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100"])
def test_meanstd_official_uses_the_cifar10_constants_for_both_cifars(dataset, tmp_path):
    """The official code normalises CIFAR-100 with CIFAR-10's statistics: so does a CIFAR-100 run."""
    write_fake_dataset(dataset, tmp_path, 16, 8, seed=0)
    cfg = resolve(RunConfig(dataset=dataset, depth=10, k=1, preprocessing="meanstd",
                            data_source="synthetic:16:8", batch_size=8, eval_batch_size=8))
    assert cfg.norm_stats == "official"
    (x, _), = make_pipeline(cfg, tmp_path, "cpu", download=False).test_batches()
    images = load_arrays(dataset, tmp_path, download=False).test_x
    mean = torch.tensor(OFFICIAL_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(OFFICIAL_STD).view(1, 3, 1, 1)
    assert x.dtype == torch.float32
    torch.testing.assert_close(x, (images.float() - mean) / std)


def test_meanstd_dataset_stats_standardise_the_training_set():
    gen = torch.Generator().manual_seed(0)
    images = (torch.rand(200, 3, 8, 8, generator=gen) * torch.tensor([200.0, 100.0, 50.0]).view(1, 3, 1, 1)
              ).to(torch.uint8)
    mean, std = channel_stats(images)
    arr = images.numpy().astype(np.float64)
    np.testing.assert_allclose(mean, arr.mean(axis=(0, 2, 3)))
    np.testing.assert_allclose(std, arr.std(axis=(0, 2, 3)))
    out = make_normalizer("meanstd", "dataset", images, "cpu")(images)
    torch.testing.assert_close(out.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(out.std(dim=(0, 2, 3), correction=0), torch.ones(3), atol=1e-4, rtol=0)


def test_div255_and_zca_normalizers():
    images = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 3, 1, 1)
    torch.testing.assert_close(make_normalizer("div255", "official", images, "cpu")(images),
                               torch.tensor([0.0, 0.2, 1.0]).view(1, 3, 1, 1))
    assert make_normalizer("zca", "official", images, "cpu") is None  # stored data is already whitened
    with pytest.raises(ValueError, match="allowed: meanstd, zca, div255"):
        make_normalizer("pca", "official", images, "cpu")


# --- GCN + ZCA ------------------------------------------------------------------------------------
def test_gcn_matches_pylearn2():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (30, 48)).astype(np.float64)
    x[3] = 77.0  # a constant image: zero norm after centring, left centred (min_divisor)
    out = global_contrast_normalize(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, ref_gcn(x), rtol=1e-12, atol=1e-12)
    norms = np.linalg.norm(out, axis=1)
    np.testing.assert_allclose(np.delete(norms, 3), 55.0)
    assert np.all(out[3] == 0)


@pytest.mark.parametrize("n", [20, 300], ids=["fewer-rows-than-features", "more-rows"])
def test_zca_fit_matches_pylearn2(n):
    rng = np.random.default_rng(n)
    x = ref_gcn(rng.normal(size=(n, 48)) @ rng.normal(size=(48, 48)))  # correlated features
    mean, p = fit_zca(torch.from_numpy(x))
    ref_mean, ref_p = ref_zca_fit(x)
    np.testing.assert_allclose(mean.numpy(), ref_mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(p.numpy(), ref_p, rtol=1e-8, atol=1e-8)


def test_zca_whitens_the_training_set():
    """With enough rows the whitened covariance is C (C + 0.1 I)^-1: near identity where the data
    has variance well above the filter bias."""
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.normal(size=(4000, 12)) @ rng.normal(size=(12, 12)) * 5)
    mean, p = fit_zca(x)
    white = (x - mean) @ p
    cov = white.T @ white / len(x)
    xc = x - mean
    c = xc.T @ xc / len(x)
    torch.testing.assert_close(cov, c @ torch.linalg.inv(c + 0.1 * torch.eye(12, dtype=c.dtype)),
                               rtol=1e-8, atol=1e-8)


def test_zca_whiten_end_to_end_matches_reference(tmp_path):
    gen = torch.Generator().manual_seed(2)
    train = torch.randint(0, 256, (40, 3, 4, 4), dtype=torch.uint8, generator=gen)
    test = torch.randint(0, 256, (7, 3, 4, 4), dtype=torch.uint8, generator=gen)
    mean, p = zca_transform(train, tmp_path, "cpu")
    ref_train, ref_test = ref_whiten(train.numpy(), test.numpy())
    whitened = (zca_whiten(train, mean, p, chunk=16), zca_whiten(test, mean, p))
    for ours, ref in zip(whitened, (ref_train, ref_test)):
        assert ours.dtype == torch.float32 and ours.shape[1:] == (3, 4, 4)
        np.testing.assert_allclose(ours.reshape(len(ours), -1).numpy(), ref, rtol=1e-5, atol=1e-5)


def test_zca_fit_is_cached_and_reused(tmp_path, monkeypatch):
    gen = torch.Generator().manual_seed(3)
    train = torch.randint(0, 256, (30, 3, 4, 4), dtype=torch.uint8, generator=gen)
    fits = []
    real_fit = preprocess.fit_zca
    monkeypatch.setattr(preprocess, "fit_zca", lambda x: fits.append(1) or real_fit(x))
    first = zca_transform(train, tmp_path / "cache", "cpu")
    path = zca_cache_path(tmp_path / "cache", train)
    assert path.is_file() and path.name.startswith("zca-") and path.suffix == ".pt"
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # atomic: no temp left behind
    second = zca_transform(train, tmp_path / "cache", "cpu")
    assert len(fits) == 1
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    other = train.clone()
    other[0, 0, 0, 0] ^= 1  # different data, different key: fitted anew
    assert zca_cache_path(tmp_path / "cache", other) != path
    zca_transform(other, tmp_path / "cache", "cpu")
    assert len(fits) == 2


def test_unreadable_zca_cache_is_refitted(tmp_path):
    gen = torch.Generator().manual_seed(4)
    train = torch.randint(0, 256, (30, 3, 4, 4), dtype=torch.uint8, generator=gen)
    good = zca_transform(train, tmp_path, "cpu")
    zca_cache_path(tmp_path, train).write_bytes(b"truncated")
    with pytest.warns(UserWarning, match="ignoring unreadable ZCA cache"):
        again = zca_transform(train, tmp_path, "cpu")
    torch.testing.assert_close(again[0], good[0])
    torch.testing.assert_close(again[1], good[1])
    assert zca_cache_path(tmp_path, train).read_bytes() != b"truncated", "the damaged cache was not replaced"
