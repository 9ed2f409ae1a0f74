"""Loading CIFAR-10/100, SVHN and ImageNet folders through torchvision, and every way a data folder
is rejected by the loader: malformed files, wrong counts, missing data, failed downloads. (The
manifest route's own checks are in test_manifest.py, successful downloads in test_download.py, a
run's data_source in test_origin.py; the folders come from conftest.py.)"""

import hashlib
import json
import pickle
import urllib.error

import numpy as np
import pytest
import scipy.io
import torch
import torchvision

from wrn.data import download
from wrn.data.datasets import load_arrays, load_image_folders
from wrn.data.layout import dataset_folder
from wrn.data.manifest import MANIFEST_NAME
from wrn.errors import DataError

N_TRAIN, N_TEST = 60, 20  # conftest.py's generated folders
ARRAY_SETS = ("cifar10", "cifar100", "svhn")


def one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message
    return message


def reseal(folder, filename):
    """Make the manifest agree with a modified file (a user's manifest over bad data)."""
    path = folder / MANIFEST_NAME
    content = json.loads(path.read_text())
    content["files"][filename] = hashlib.sha256((folder / filename).read_bytes()).hexdigest()
    path.write_text(json.dumps(content))


# --- loading --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ARRAY_SETS)
def test_generated_files_load_through_the_manifest_route(generated, name):
    data = load_arrays(name, generated, download=False)
    assert data.source == "manifest"
    for x, y, n in ((data.train_x, data.train_y, N_TRAIN), (data.test_x, data.test_y, N_TEST)):
        assert x.dtype == torch.uint8 and x.shape == (n, 3, 32, 32) and x.is_contiguous()
        assert y.dtype == torch.int64 and y.shape == (n,)
        assert 0 <= int(y.min()) and int(y.max()) < data.num_classes


def test_cifar_layout_matches_the_pickle_rows(generated):
    """Channel-major pickle rows become NCHW images; the first batch file comes first."""
    data = load_arrays("cifar10", generated, download=False)
    with open(dataset_folder("cifar10", generated) / "data_batch_1", "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    assert set(entry) >= {"data", "labels", "batch_label", "filenames"}
    assert torch.equal(data.train_x[0].reshape(-1), torch.from_numpy(entry["data"][0]))
    assert data.train_y[: len(entry["labels"])].tolist() == entry["labels"]


def test_cifar100_uses_fine_labels(generated):
    data = load_arrays("cifar100", generated, download=False)
    with open(dataset_folder("cifar100", generated) / "train", "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    assert data.train_y.tolist() == entry["fine_labels"]
    assert entry["coarse_labels"] == [c // 5 for c in entry["fine_labels"]]


def test_svhn_trains_on_train_plus_extra_and_maps_digit_zero(generated):
    folder = dataset_folder("svhn", generated)
    mats = {f: scipy.io.loadmat(folder / f) for f in ("train_32x32.mat", "extra_32x32.mat")}
    data = load_arrays("svhn", generated, download=False)
    x = np.concatenate([m["X"] for m in mats.values()], axis=3)  # (32, 32, 3, N)
    y = np.concatenate([m["y"][:, 0] for m in mats.values()])
    assert set(np.unique(y)) <= set(range(1, 11))
    assert data.train_x.shape[0] == x.shape[3] == N_TRAIN
    assert torch.equal(data.train_x, torch.from_numpy(x.transpose(3, 2, 0, 1).copy()))
    assert data.train_y.tolist() == [0 if v == 10 else int(v) for v in y]


def test_imagenet_folders(generated):
    T = torchvision.transforms
    tf = T.Compose([T.CenterCrop(32), T.ToTensor()])
    train, val, source = load_image_folders(generated, tf, tf)
    assert source == "manifest" and (len(train), len(val)) == (N_TRAIN, N_TEST)
    assert train.classes == val.classes and len(train.classes) <= 10
    image, label = train[0]
    assert image.shape == (3, 32, 32) and 0 <= label < len(train.classes)


# --- malformed content behind a consistent manifest -----------------------------------------------
def rewrite_pickle(path, **changes):
    with open(path, "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    entry.update({k: v(entry) for k, v in changes.items()})
    with open(path, "wb") as f:
        pickle.dump(entry, f)


@pytest.mark.parametrize("change, expected", [
    (dict(data=lambda e: e["data"].astype(np.float64)), "dtype float64, expected uint8"),
    (dict(data=lambda e: e["data"][:, :3000]), "expected (N, 3072)"),
    (dict(labels=lambda e: [10] + e["labels"][1:]), "expected 0..9"),
    (dict(labels=lambda e: e["labels"][1:]), "one label per image"),
])
def test_malformed_cifar_batch_is_rejected_naming_it(copy_of, change, expected):
    root = copy_of("cifar10")
    folder = dataset_folder("cifar10", root)
    rewrite_pickle(folder / "data_batch_2", **change)
    reseal(folder, "data_batch_2")
    with pytest.raises(DataError) as err:
        load_arrays("cifar10", root, download=False)
    assert "data_batch_2" in one_line(err) and expected in str(err.value)


@pytest.mark.parametrize("variables, expected", [
    (lambda m: {"X": m["X"][:, :, :1], "y": m["y"]}, "expected (32, 32, 3, N)"),
    (lambda m: {"X": m["X"].astype(np.float32), "y": m["y"]}, "expected uint8"),
    (lambda m: {"X": m["X"], "y": np.where(m["y"] == 10, 0, m["y"])}, "expected 1..10"),
    (lambda m: {"X": m["X"], "y": m["y"][1:]}, "'y' has shape"),
])
def test_malformed_svhn_file_is_rejected_naming_it(copy_of, variables, expected):
    root = copy_of("svhn")
    folder = dataset_folder("svhn", root)
    mat = scipy.io.loadmat(folder / "extra_32x32.mat")
    mat["y"][0] = 10  # make sure a digit 0 is present
    scipy.io.savemat(folder / "extra_32x32.mat", variables(mat))
    reseal(folder, "extra_32x32.mat")
    with pytest.raises(DataError) as err:
        load_arrays("svhn", root, download=False)
    assert "extra_32x32.mat" in one_line(err) and expected in str(err.value)


def test_count_differing_from_manifest_is_rejected(copy_of):
    root = copy_of("cifar10")
    path = dataset_folder("cifar10", root) / MANIFEST_NAME
    content = json.loads(path.read_text())
    content["counts"]["test"] = N_TEST + 1
    path.write_text(json.dumps(content))
    with pytest.raises(DataError) as err:
        load_arrays("cifar10", root, download=False)
    message = one_line(err)
    assert "test_batch" in message and f"{N_TEST} test images, expected {N_TEST + 1}" in message
    assert "manifest's count" in message


# --- official route ---------------------------------------------------------------------------------
def test_official_route_checks_torchvision_md5_and_names_the_file(copy_of):
    root = copy_of("cifar10")
    (dataset_folder("cifar10", root) / MANIFEST_NAME).unlink()
    with pytest.raises(DataError) as err:
        load_arrays("cifar10", root, download=False)
    message = one_line(err)
    assert "md5" in message and "cifar-10-batches-py/" in message and "wrn.manifest" in message
    assert f"python -m wrn.download cifar10 --data-dir {root}" in message


def test_official_route_requires_official_counts(copy_of, monkeypatch):
    """Official-looking files (md5 as torchvision expects) with the wrong number of images."""
    root = copy_of("svhn")
    folder = dataset_folder("svhn", root)
    (folder / MANIFEST_NAME).unlink()
    split_list = {s: [url, f, hashlib.md5((folder / f).read_bytes()).hexdigest()]
                  for s, (url, f, _) in torchvision.datasets.SVHN.split_list.items()}
    monkeypatch.setattr(torchvision.datasets.SVHN, "split_list", split_list)
    with pytest.raises(DataError) as err:
        load_arrays("svhn", root, download=False)
    message = one_line(err)
    assert "train_32x32.mat" in message and "extra_32x32.mat" in message
    assert f"{N_TRAIN} train images, expected 604388 (the official count)" in message


def test_official_imagenet_needs_1000_classes(copy_of):
    root = copy_of("imagenet")
    (dataset_folder("imagenet", root) / MANIFEST_NAME).unlink()
    with pytest.raises(DataError) as err:
        load_image_folders(root)
    assert "expected 1000" in one_line(err)


@pytest.mark.parametrize("name", (*ARRAY_SETS, "imagenet"))
def test_missing_data_offline_says_where_and_how(tmp_path, name):
    with pytest.raises(DataError) as err:
        if name == "imagenet":
            load_image_folders(tmp_path)
        else:
            load_arrays(name, tmp_path, download=False)
    message = one_line(err)
    assert str(dataset_folder(name, tmp_path)) in message
    assert "--data-dir" in message and f"python -m wrn.manifest {tmp_path} --dataset {name}" in message
    if name == "imagenet":
        assert "cannot be downloaded" in message and "train/ and val/" in message
    else:
        assert f"`python -m wrn.download {name} --data-dir {tmp_path}`" in message and "internet" in message


@pytest.mark.parametrize("name", ARRAY_SETS)
def test_failed_download_is_one_line(tmp_path, monkeypatch, name):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(download, "download_and_extract_archive", offline)
    monkeypatch.setattr(download, "download_url", offline)
    with pytest.raises(DataError) as err:
        load_arrays(name, tmp_path, download=True)
    message = one_line(err)
    assert message.startswith(f"could not download {name}") and "no network" in message
    assert f"python -m wrn.download {name} --data-dir {tmp_path}" in message


def test_unknown_dataset():
    with pytest.raises(DataError, match="allowed: cifar10, cifar100, svhn"):
        load_arrays("mnist", "/nonexistent")
