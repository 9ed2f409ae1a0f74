"""`python -m wrn.download`: the official files fetched and md5-checked on a machine with internet,
then read offline through the official route.

There is no network in the tests. `urllib.request.urlopen`, the one call through which torchvision's
download code reaches a server, serves files written by wrn.data.fake in the real on-disk formats
(CIFAR's .tar.gz of pickles, SVHN's .mat files); everything above it runs as it is: the redirect
check, the download, the md5 checks and the extraction. torchvision's md5 sums (and the official
image counts) are replaced by those of the served files, the route test_datasets.py's
test_official_route_requires_official_counts uses."""

from __future__ import annotations

import hashlib
import io
import tarfile
import urllib.error
import urllib.request

import pytest
import torch
import torchvision

from wrn.config import DATASET_SIZES
from wrn.data import download
from wrn.data.datasets import load_arrays
from wrn.data.fake import write_fake_dataset
from wrn.data.layout import dataset_folder
from wrn.data.manifest import MANIFEST_NAME

N_TRAIN, N_TEST = 40, 20
ARRAY_SETS = ("cifar10", "cifar100", "svhn")
CIFAR_CLASSES = {"cifar10": torchvision.datasets.CIFAR10, "cifar100": torchvision.datasets.CIFAR100}


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


class Response(io.BytesIO):
    """What urlopen returns, as far as torchvision reads it."""

    def __init__(self, url: str, body: bytes):
        super().__init__(body)
        self.url, self.length = url, len(body)


class Network:
    """The internet as torchvision sees it: URL -> bytes, every request recorded; `offline` refuses all."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        self.offline = False

    def urlopen(self, request, *args, **kwargs):
        url = request.full_url if isinstance(request, urllib.request.Request) else request
        self.requests.append(url)
        if self.offline or url not in self.files:
            raise urllib.error.URLError("no route to host")
        return Response(url, self.files[url])


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    """Each dataset in its real format, as the official servers hold it (no manifest)."""
    root = tmp_path_factory.mktemp("served")
    for name in ARRAY_SETS:
        write_fake_dataset(name, root, N_TRAIN, N_TEST, seed=3)
        (dataset_folder(name, root) / MANIFEST_NAME).unlink()
    return root


def _cifar_archive(folder) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return buffer.getvalue()


@pytest.fixture
def network(originals, monkeypatch) -> Network:
    """The fake internet serving `originals` at torchvision's URLs, with torchvision's md5 sums and the
    official counts made those of the served files."""
    net = Network()
    monkeypatch.setattr(urllib.request, "urlopen", net.urlopen)
    for name, tv in CIFAR_CLASSES.items():
        folder = dataset_folder(name, originals)
        archive = _cifar_archive(folder)
        net.files[tv.url] = archive
        monkeypatch.setattr(tv, "tgz_md5", md5(archive))
        for attr in ("train_list", "test_list"):
            monkeypatch.setattr(tv, attr, [[f, md5((folder / f).read_bytes())] for f, _ in getattr(tv, attr)])
        monkeypatch.setattr(tv, "meta", {**tv.meta, "md5": md5((folder / tv.meta["filename"]).read_bytes())})
    split_list = {}
    for split, (url, filename, _) in torchvision.datasets.SVHN.split_list.items():
        body = (dataset_folder("svhn", originals) / filename).read_bytes()
        net.files[url] = body
        split_list[split] = [url, filename, md5(body)]
    monkeypatch.setattr(torchvision.datasets.SVHN, "split_list", split_list)
    for name in ARRAY_SETS:
        monkeypatch.setitem(DATASET_SIZES, name, (N_TRAIN, N_TEST))
    return net


def one_line(stderr: str) -> str:
    """The error's one line; what comes before it may only be torchvision's download progress bars."""
    lines = stderr.strip().splitlines()
    assert "Traceback" not in stderr and lines and lines[-1].startswith("error: "), stderr
    assert all("B/s]" in line for line in lines[:-1]), stderr
    return lines[-1]


@pytest.mark.parametrize("name", ARRAY_SETS)
def test_download_then_train_offline_on_the_official_route(name, network, originals, tmp_path, capsys):
    data_dir = tmp_path / "shared" / "data"
    assert download.main([name, "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert network.requests, "nothing was fetched"
    assert f"{name}: fetched " in out and str(dataset_folder(name, data_dir)) in out and "md5" in out
    assert out.strip().splitlines()[-1] == f"train with --data-dir {data_dir}"
    network.offline = True  # a compute node: the data is read where the download put it
    data = load_arrays(name, data_dir, download=True)
    assert data.source == "official"
    served = load_arrays(name, originals, download=False)
    assert torch.equal(data.train_x, served.train_x) and torch.equal(data.test_y, served.test_y)


def test_a_complete_set_is_checked_not_fetched_and_a_damaged_file_is_restored(network, tmp_path, capsys):
    assert download.main(["cifar10", "svhn", "--data-dir", str(tmp_path)]) == 0
    capsys.readouterr()
    fetched = len(network.requests)
    assert download.main(["cifar10", "svhn", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert len(network.requests) == fetched
    assert f"cifar10: already complete in {dataset_folder('cifar10', tmp_path)} (md5-checked)" in out
    assert f"svhn: already complete in {dataset_folder('svhn', tmp_path)} (md5-checked)" in out
    victim = dataset_folder("svhn", tmp_path) / "extra_32x32.mat"
    victim.write_bytes(victim.read_bytes()[:-10])
    assert download.main(["svhn", "--data-dir", str(tmp_path)]) == 0
    assert "svhn: fetched extra_32x32.mat into" in capsys.readouterr().out
    assert network.requests[fetched:] == [torchvision.datasets.SVHN.split_list["extra"][0]] * 2  # HEAD, GET


def test_the_data_dir_defaults_to_wrn_data_dir(network, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WRN_DATA_DIR", str(tmp_path / "env-data"))
    assert download.main(["cifar100"]) == 0
    assert (dataset_folder("cifar100", tmp_path / "env-data") / "train").is_file()
    assert f"train with --data-dir {tmp_path / 'env-data'}" in capsys.readouterr().out


@pytest.mark.parametrize("name", ("cifar10", "svhn"))
def test_a_corrupted_download_is_refused_by_its_md5(name, network, tmp_path, capsys):
    for url in network.files:
        network.files[url] = b"<html>captive portal</html>"
    assert download.main([name, "--data-dir", str(tmp_path)]) == 2
    line = one_line(capsys.readouterr().err)
    assert f"could not download {name}" in line and "corrupted" in line


def test_offline_says_what_to_run_where(network, tmp_path, capsys):
    network.offline = True
    assert download.main(["cifar10", "--data-dir", str(tmp_path)]) == 2
    line = one_line(capsys.readouterr().err)
    assert "could not download cifar10" in line and "no route to host" in line
    assert f"python -m wrn.download cifar10 --data-dir {tmp_path}" in line and "with internet" in line


def test_imagenet_cannot_be_downloaded_and_nothing_is_fetched(network, tmp_path, capsys):
    assert download.main(["cifar10", "imagenet", "--data-dir", str(tmp_path / "d")]) == 2
    line = one_line(capsys.readouterr().err)
    assert "imagenet" in line and "cannot be downloaded" in line and "train/ and val/" in line
    assert str(dataset_folder("imagenet", tmp_path / "d")) in line
    assert not network.requests and not (tmp_path / "d").exists()


@pytest.mark.parametrize("argv, expected", [
    (["mnist"], ("mnist", "cifar10", "svhn")),
    ([], ("DATASET",)),
    (["cifar10", "--data-dir"], ("--data-dir",)),
])
def test_bad_command_lines_are_one_line(network, argv, expected, capsys):
    assert download.main(argv) == 2
    line = one_line(capsys.readouterr().err)
    assert all(part in line for part in expected), line
    assert not network.requests


def test_a_data_dir_that_cannot_be_made_is_one_line(network, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert download.main(["cifar10", "--data-dir", str(tmp_path / "afile" / "data")]) == 2
    line = one_line(capsys.readouterr().err)
    assert "--data-dir" in line and "afile" in line
    assert not network.requests


def test_prepared_data_is_never_downloaded_over(network, originals, tmp_path, capsys):
    write_fake_dataset("cifar10", tmp_path, N_TRAIN, N_TEST)
    before = {p.name: p.read_bytes() for p in dataset_folder("cifar10", tmp_path).iterdir()}
    assert download.main(["cifar10", "--data-dir", str(tmp_path)]) == 2
    line = one_line(capsys.readouterr().err)
    assert "prepared data" in line and MANIFEST_NAME in line and "--data-dir" in line
    assert {p.name: p.read_bytes() for p in dataset_folder("cifar10", tmp_path).iterdir()} == before
    assert not network.requests

