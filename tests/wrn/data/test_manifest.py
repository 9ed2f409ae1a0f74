"""The manifest route: ``wrn-manifest.json`` (wrn.data.manifest) records every file's sha256 and the
counts, marks generated data, and the loader rejects a folder that departs from it (tampered, unlisted
or uncovered files, a malformed or foreign manifest); ``python -m wrn.manifest`` (wrn.data.prepared)
writes one only for a folder the loader accepts. (The folders come from conftest.py.)"""

import hashlib
import json
import shutil

import pytest

from wrn.data import prepared
from wrn.data.datasets import load_arrays, load_image_folders
from wrn.data.layout import dataset_folder
from wrn.data.manifest import MANIFEST_NAME
from wrn.data.origin import data_origin
from wrn.errors import DataError

N_TRAIN, N_TEST = 60, 20  # conftest.py's generated folders


def one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message
    return message


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
    assert prepared.main([str(root), "--dataset", "svhn"]) == 0
    out = capsys.readouterr().out
    assert "train 60, test 20" in out and f"--data-dir {root} and data_source=subset:60:20" in out
    assert load_arrays("svhn", root, download=False).source == "manifest"
    assert data_origin("svhn", root) == "prepared"


def test_generated_data_says_so_in_its_manifest(generated, copy_of):
    content = json.loads((dataset_folder("cifar10", generated) / MANIFEST_NAME).read_text())
    assert content["generated"] is True and data_origin("cifar10", generated) == "generated"
    root = copy_of("cifar10")
    path = dataset_folder("cifar10", root) / MANIFEST_NAME
    path.unlink()
    prepared.write_manifest("cifar10", root)  # a user's manifest vouches for prepared data
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
    assert prepared.main([str(root), "--dataset", "cifar10"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "test_batch" in err and "missing" in err
    assert not (folder / MANIFEST_NAME).exists()
    assert prepared.main([str(root / "nowhere"), "--dataset", "cifar10"]) == 2
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
