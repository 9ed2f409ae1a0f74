"""Loading CIFAR-10/100, SVHN and ImageNet folders through torchvision, and every way a data folder
is rejected: manifest tampering, malformed files, wrong counts, missing data, failed downloads, data
other than a run's data_source names. (Successful downloads are in test_download.py.)"""

import hashlib
import json
import pickle
import shutil
import urllib.error

import numpy as np
import pytest
import scipy.io
import torch
import torchvision

from wrn import datasets, fake_data, manifest
from wrn.config import DATASET_SIZES, RunConfig, resolve
from wrn.datasets import MANIFEST_NAME, check_data_source, dataset_folder, load_arrays, load_image_folders
from wrn.errors import DataError

N_TRAIN, N_TEST = 60, 20
ARRAY_SETS = ("cifar10", "cifar100", "svhn")


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """One pristine copy of every dataset; tests that damage data work on a copy."""
    root = tmp_path_factory.mktemp("data")
    for name in (*ARRAY_SETS, "imagenet"):
        fake_data.write_fake_dataset(name, root, N_TRAIN, N_TEST, seed=1)
    return root


@pytest.fixture
def copy_of(generated, tmp_path):
    def make(name):
        shutil.copytree(dataset_folder(name, generated), dataset_folder(name, tmp_path))
        return tmp_path
    return make


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


# --- manifest route ---------------------------------------------------------------------------------
def test_manifest_records_sha256_and_counts(generated):
    folder = dataset_folder("cifar10", generated)
    content = json.loads((folder / MANIFEST_NAME).read_text())
    assert content["format"] == "wrn-manifest/1" and content["dataset"] == "cifar10"
    assert content["counts"] == {"train": N_TRAIN, "test": N_TEST}
    assert set(content["files"]) == {*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"}
    for rel, digest in content["files"].items():
        assert digest == hashlib.sha256((folder / rel).read_bytes()).hexdigest()


def test_manifest_cli_writes_and_reports(copy_of, capsys):
    root = copy_of("svhn")
    (dataset_folder("svhn", root) / MANIFEST_NAME).unlink()
    assert manifest.main([str(root), "--dataset", "svhn"]) == 0
    out = capsys.readouterr().out
    assert "train 60, test 20" in out and f"--data-dir {root} and data_source=subset:60:20" in out
    assert load_arrays("svhn", root, download=False).source == "manifest"
    assert datasets.data_origin("svhn", root) == "prepared"


def test_generated_data_says_so_in_its_manifest(generated, copy_of):
    content = json.loads((dataset_folder("cifar10", generated) / MANIFEST_NAME).read_text())
    assert content["generated"] is True and datasets.data_origin("cifar10", generated) == "generated"
    root = copy_of("cifar10")
    path = dataset_folder("cifar10", root) / MANIFEST_NAME
    path.unlink()
    manifest.write_manifest("cifar10", root)  # a user's manifest vouches for prepared data
    assert "generated" not in json.loads(path.read_text())
    content["generated"] = "yes"
    path.write_text(json.dumps(content))
    with pytest.raises(DataError) as err:
        load_arrays("cifar10", root, download=False)
    assert MANIFEST_NAME in one_line(err) and '"generated": true' in str(err.value)


def test_manifest_cli_refuses_bad_data_with_one_line(copy_of, capsys):
    root = copy_of("cifar10")
    folder = dataset_folder("cifar10", root)
    (folder / MANIFEST_NAME).unlink()
    (folder / "test_batch").unlink()
    assert manifest.main([str(root), "--dataset", "cifar10"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "test_batch" in err and "missing" in err
    assert not (folder / MANIFEST_NAME).exists()
    assert manifest.main([str(root / "nowhere"), "--dataset", "cifar10"]) == 2
    assert "--data-dir" in capsys.readouterr().err


def test_tampered_file_is_rejected_naming_it(copy_of):
    root = copy_of("cifar10")
    path = dataset_folder("cifar10", root) / "data_batch_3"
    raw = bytearray(path.read_bytes())
    raw[-100] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError) as err:
        load_arrays("cifar10", root, download=False)
    assert "data_batch_3" in one_line(err) and "sha256" in str(err.value)


def test_tampered_imagenet_image_is_rejected(copy_of):
    root = copy_of("imagenet")
    victim = sorted((dataset_folder("imagenet", root) / "val").rglob("*.JPEG"))[0]
    victim.write_bytes(victim.read_bytes() + b"x")
    with pytest.raises(DataError) as err:
        load_image_folders(root)
    assert victim.name in one_line(err)


def test_unlisted_imagenet_image_is_rejected(copy_of):
    root = copy_of("imagenet")
    source = sorted((dataset_folder("imagenet", root) / "train").rglob("*.JPEG"))[0]
    shutil.copy(source, source.with_name("stray.JPEG"))
    with pytest.raises(DataError) as err:
        load_image_folders(root)
    assert "stray.JPEG" in one_line(err) and "not listed" in str(err.value)


def test_manifest_must_cover_every_file_the_loader_reads(copy_of):
    root = copy_of("cifar100")
    path = dataset_folder("cifar100", root) / MANIFEST_NAME
    content = json.loads(path.read_text())
    del content["files"]["meta"]
    path.write_text(json.dumps(content))
    with pytest.raises(DataError) as err:
        load_arrays("cifar100", root, download=False)
    assert "meta" in one_line(err) and "not listed" in str(err.value)


@pytest.mark.parametrize("text, expected", [("{not json", "not a readable JSON"),
                                            ('{"format": "other"}', "expected"),
                                            (None, "manifest is for dataset 'svhn'")])
def test_malformed_or_foreign_manifest(copy_of, text, expected):
    root = copy_of("cifar10")
    path = dataset_folder("cifar10", root) / MANIFEST_NAME
    if text is None:
        content = json.loads(path.read_text())
        content["dataset"] = "svhn"
        text = json.dumps(content)
    path.write_text(text)
    with pytest.raises(DataError) as err:
        load_arrays("cifar10", root, download=False)
    assert MANIFEST_NAME in one_line(err) and expected in str(err.value)


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
    monkeypatch.setattr(datasets, "download_and_extract_archive", offline)
    monkeypatch.setattr(datasets, "download_url", offline)
    with pytest.raises(DataError) as err:
        load_arrays(name, tmp_path, download=True)
    message = one_line(err)
    assert message.startswith(f"could not download {name}") and "no network" in message
    assert f"python -m wrn.download {name} --data-dir {tmp_path}" in message


def test_unknown_dataset():
    with pytest.raises(DataError, match="allowed: cifar10, cifar100, svhn"):
        load_arrays("mnist", "/nonexistent")


# --- the data a run's data_source names ---------------------------------------------------------------
def cifar10(data_source):
    return resolve(RunConfig(dataset="cifar10", data_source=data_source))


@pytest.fixture
def prepared_subset(copy_of):
    """A user's subset: the generated files vouched for by a manifest of wrn.manifest (not generated)."""
    root = copy_of("cifar10")
    (dataset_folder("cifar10", root) / MANIFEST_NAME).unlink()
    manifest.write_manifest("cifar10", root)
    return root


@pytest.mark.parametrize("data_source", ["subset:60:20", "synthetic:60:20"])  # synthetic: the old spelling
def test_a_prepared_subset_trains_as_a_subset(prepared_subset, data_source):
    check_data_source(cifar10(data_source), N_TRAIN, N_TEST, prepared_subset)


@pytest.mark.parametrize("data_source, fits", [("real", "subset:60:20"), ("subset:50:20", "subset:60:20")])
def test_a_prepared_subset_is_refused_naming_the_data_source_that_fits(prepared_subset, data_source, fits):
    with pytest.raises(DataError) as err:
        check_data_source(cifar10(data_source), N_TRAIN, N_TEST, prepared_subset)
    message = one_line(err)
    assert f"data_source={data_source!r}" in message and f"data_source={fits} fits this folder" in message
    assert f"60 train / 20 test images of prepared data ({MANIFEST_NAME})" in message


@pytest.mark.parametrize("data_source", ["real", "subset:60:20"])
def test_generated_data_never_passes_for_real_data(generated, data_source, monkeypatch):
    """Not even when its counts are the real ones (here the official counts are made 60 / 20)."""
    monkeypatch.setitem(DATASET_SIZES, "cifar10", (N_TRAIN, N_TEST) if data_source == "real" else (500, 100))
    check_data_source(cifar10(f"synthetic:{N_TRAIN}:{N_TEST}"), N_TRAIN, N_TEST, generated)
    with pytest.raises(DataError) as err:
        check_data_source(cifar10(data_source), N_TRAIN, N_TEST, generated)
    message = one_line(err)
    assert "data generated by wrn.fake_data" in message and "data_source=synthetic:60:20 fits" in message


def test_official_files_of_the_real_size_fit_real(tmp_path):
    with pytest.raises(DataError) as err:
        check_data_source(cifar10("subset:64:32"), *DATASET_SIZES["cifar10"], tmp_path)
    assert "of the official files" in one_line(err) and "data_source=real fits" in str(err.value)
    check_data_source(cifar10("real"), *DATASET_SIZES["cifar10"], tmp_path)
