"""Data integrity: downloads are checksum-verified, and a damaged data folder stops a launch
with one line naming the file before anything is written; a folder damaged after the launch checked it
is caught again by the worker, recorded as the run's failure, and never produces a result. A launch
without internet and without the data says which command fetches it; a prepared subset trains under
its own data_source. (Shapes, dtypes, label ranges and counts, one by one, are in test_bad_inputs.py.)"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.error

import pytest
import torchvision.datasets.utils as tv_utils

from harness import N_TEST, N_TRAIN, REPO_ROOT, make_run, python_env, tree, worker_log, write_spec
from experiments import store
from experiments.run import main as run_main

pytestmark = pytest.mark.slow  # workers on damaged data


def tamper(data_root, name="data_batch_2"):
    path = data_root / "cifar-10-batches-py" / name
    data = bytearray(path.read_bytes())
    data[-50] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture
def results(tmp_path):
    path = tmp_path / "results"
    path.mkdir()
    (path / "keep.txt").write_text("earlier results\n")
    return path


def test_launch_on_a_tampered_dataset_names_the_file_and_writes_nothing(data_dir, results, tmp_path):
    """The real command line, with its default local executor."""
    data = tmp_path / "data"
    shutil.copytree(data_dir, data)
    tamper(data)
    before_results, before_data = tree(results), tree(data)
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.run", str(write_spec(tmp_path)), "--profile", "paper", "--yes",
         "--data-dir", str(data), "--results", str(results)],
        cwd=REPO_ROOT, env=python_env(), capture_output=True, text=True, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "data_batch_2" in lines[0] and "sha256" in lines[0], lines[0]
    assert tree(results) == before_results, "a launch on damaged data wrote into the results folder"
    assert tree(data) == before_data


@pytest.mark.parametrize("dataset", ["cifar10", "svhn"])
def test_corrupted_download_is_rejected_by_its_checksum(dataset, results, tmp_path, monkeypatch, capsys):
    """Whatever arrives from the network is md5-checked before use: here every download is garbage."""
    from experiments.run import main

    fetched = []

    def garbage_download(url, path, *args, **kwargs):
        fetched.append(url)
        with open(path, "wb") as f:
            f.write(b"<html>captive portal</html>")

    monkeypatch.setattr(tv_utils, "_urlretrieve", garbage_download)
    monkeypatch.setattr(tv_utils, "_get_redirect_url", lambda url, max_hops=3: url)
    spec = write_spec(tmp_path).read_text().replace('dataset = "cifar10"', f'dataset = "{dataset}"')
    spec_path = tmp_path / "svhn_spec.toml"
    spec_path.write_text(spec.replace('preprocessing = "meanstd"', 'preprocessing = "div255"'))
    data = tmp_path / "data"
    data.mkdir()
    before = tree(results)
    code = main([str(spec_path), "--profile", "paper", "--yes", "--data-dir", str(data), "--results", str(results)])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert fetched, "nothing was downloaded"
    assert code == 2 and len(lines) == 1, err
    assert dataset in lines[0] and "corrupted" in lines[0], lines[0]
    assert tree(results) == before


def test_a_launch_without_internet_or_data_names_the_download_command(results, tmp_path, monkeypatch, capsys):
    """A compute node: the data folder is empty and every download fails."""
    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(tv_utils, "_urlretrieve", offline)
    monkeypatch.setattr(tv_utils, "_get_redirect_url", lambda url, max_hops=3: url)
    data = tmp_path / "data"
    data.mkdir()
    before = tree(results)
    code = run_main([str(write_spec(tmp_path)), "--profile", "paper", "--yes", "--data-dir", str(data),
                     "--results", str(results)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert "could not download cifar10" in lines[0] and "name resolution" in lines[0]
    assert f"`python -m wrn.download cifar10 --data-dir {data}`" in lines[0]
    assert tree(results) == before


def test_a_prepared_subset_trains_under_its_own_data_source(data_dir, results, tmp_path, capsys):
    """The smoke profile's recipe on a user's subset (--set data_source=subset:N:M): the launcher reads
    --data-dir instead of generating data, and the run records what it trained on."""
    data = tmp_path / "data"
    shutil.copytree(data_dir, data)
    manifest = data / "cifar-10-batches-py" / "wrn-manifest.json"
    content = json.loads(manifest.read_text())
    del content["generated"]  # a user's subset, vouched for by its manifest
    manifest.write_text(json.dumps(content))
    source = f"subset:{N_TRAIN}:{N_TEST}"
    code = run_main([str(write_spec(tmp_path)), "--profile", "smoke", "--set", f"data_source={source}",
                     "--only", "k=1", "--executor", "debug", "--data-dir", str(data), "--results", str(results)])
    assert code == 0, capsys.readouterr().err
    (record,) = store.all_runs(results)
    assert record.state == "done" and record.config.data_source == source
    assert not (results / "data").exists(), "the launcher generated data instead of reading --data-dir"
    table = next((results / "tables").glob("*.md")).read_text()
    assert f"trained on data_source {source}" in table  # not taken for the profile's generated data


def test_data_damaged_after_the_launch_is_caught_by_the_worker(workers, data_dir, tmp_path):
    """A queued job starts after someone edited the data: the worker verifies again, records the
    failure naming the file, and writes no result."""
    data = tmp_path / "data"
    shutil.copytree(data_dir, data)
    tamper(data, "data_batch_4")
    run = make_run(tmp_path / "results")
    code = workers.run(run, data)
    assert code not in (0, -9), worker_log(run)
    assert not (run / store.RESULT).exists()
    rec = store.read_run(run)
    assert rec.state == "failed" and rec.failure.error_type == "DataError"
    assert "data_batch_4" in rec.failure.message and "sha256" in rec.failure.message
