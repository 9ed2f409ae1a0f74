"""Cluster profiles: every shipped profile loads; bad names, keys and values are one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments.clusters import KEYS, ClusterError, ClusterProfile, known_clusters, load_cluster
from wrn.errors import UserError


@pytest.mark.parametrize("name", known_clusters())
def test_shipped_profiles_load(name):
    profile = load_cluster(name)
    assert profile.name == name
    assert profile.signal_delay_s < profile.time_min * 60


def test_local_and_example_profiles_ship():
    assert {"local", "example_gpu"} <= set(known_clusters())
    local = load_cluster("local")
    assert (local.partition, local.gpus_per_run, local.cpus_per_run) == ("debug", 0, 1)


def test_every_key_of_the_example_is_documented():
    text = (Path(load_cluster("example_gpu").path)).read_text()
    for key in KEYS:
        assert key in text, key


def test_profile_by_path_with_defaults(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('partition = "gpu"\nsetup = ["module load cuda"]\n[sbatch]\nexclude = "n1"\n')
    profile = load_cluster(path)
    assert profile == ClusterProfile(name="mine", path=path.resolve(), partition="gpu",
                                     setup=("module load cuda",), sbatch={"exclude": "n1"})
    assert profile.max_num_timeout >= 10  # not submitit's 3: short limits count preemptions as timeouts


def test_unknown_cluster_names_the_known_ones():
    with pytest.raises(ClusterError, match=r"unknown cluster profile 'locl' \(did you mean 'local'\?\).*example_gpu"):
        load_cluster("locl")
    with pytest.raises(UserError, match="no such cluster profile file"):
        load_cluster("nowhere/x.toml")


@pytest.mark.parametrize("text, message", [
    ('partiton = "gpu"', r"partiton: 'gpu': unknown key \(did you mean 'partition'\?\)"),
    ("cpus_per_run = 0", r"cpus_per_run: 0: expected a number >= 1"),
    ('cpus_per_run = "8"', r"cpus_per_run: '8': expected an integer"),
    ("gpus_per_run = true", r"gpus_per_run: True: expected an integer"),
    ("mem_gb = -1", r"mem_gb: -1: expected a number >= 0"),
    ('partition = ""', r"partition: '': expected a non-empty string"),
    ("setup = [1]", r"setup: \[1\]: expected a list of strings"),
    ("setup = 'module load x'", r"setup: 'module load x': expected a list"),
    ("sbatch = { exclude = [1] }", r"sbatch.exclude: \[1\]: expected a string"),
    ("time_min = 1\nsignal_delay_s = 60", r"signal_delay_s: 60: must be shorter than the time limit"),
    ("partition = ", r"invalid TOML"),
])
def test_bad_profiles_are_one_line_errors(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text + "\n")
    with pytest.raises(ClusterError, match=message) as err:
        load_cluster(path)
    assert "\n" not in str(err.value)
    assert str(path) in str(err.value)
