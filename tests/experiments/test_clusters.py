"""Cluster profiles: every shipped profile loads; bad names, keys and values are one-line errors; runs
are laid out on a profile's nodes (distributed runs spread over nodes, small runs packed on a GPU)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from experiments.clusters import (KEYS, ClusterError, ClusterProfile, RunLoad, Topology, known_clusters, load_cluster,
                                  place_runs)
from wrn.errors import UserError


@pytest.mark.parametrize("name", known_clusters())
def test_shipped_profiles_load(name):
    profile = load_cluster(name)
    assert profile.name == name
    assert profile.signal_delay_s < profile.time_min * 60


def test_local_and_example_profiles_ship():
    assert {"local", "example_gpu", "example_8gpu"} <= set(known_clusters())
    local = load_cluster("local")
    assert (local.partition, local.gpus_per_task, local.cpus_per_task, local.tasks_per_node) == ("debug", 0, 1, 2)
    eight = load_cluster("example_8gpu")
    assert (eight.gpus_per_task, eight.tasks_per_node, eight.runs_per_task) == (1, 8, 4)


def test_every_key_of_the_example_is_documented():
    text = (Path(load_cluster("example_gpu").path)).read_text()
    for key in KEYS:
        assert key in text, key


@pytest.mark.parametrize("old, new", [("gpus_per_run", "gpus_per_task"), ("cpus_per_run", "cpus_per_task")])
def test_a_renamed_key_names_its_new_name(tmp_path, old, new):
    path = tmp_path / "old.toml"
    path.write_text(f"{old} = 1\n")
    with pytest.raises(ClusterError, match=rf"{old}: 1: renamed to {new}") as err:
        load_cluster(path)
    assert "\n" not in str(err.value)


EIGHT = ClusterProfile(name="eight", path=Path("eight.toml"), tasks_per_node=8, runs_per_task=4)


@pytest.mark.parametrize("world_size, nodes, per_node", [(2, 1, 2), (8, 1, 8), (16, 2, 8), (64, 8, 8)])
def test_a_distributed_run_fills_nodes_of_tasks_per_node_processes(world_size, nodes, per_node):
    assert EIGHT.topology(world_size, "r") == Topology(nodes=nodes, tasks_per_node=per_node, runs=1)
    assert EIGHT.topology(world_size, "r").tasks == world_size


def test_a_world_size_that_fills_no_whole_nodes_is_a_one_line_error_naming_the_run():
    with pytest.raises(ClusterError, match=r"run abc123: world_size = 12 does not fit cluster 'eight' .*"
                                           r"tasks_per_node = 8.*a multiple of 8") as err:
        EIGHT.topology(12, "abc123")
    assert "\n" not in str(err.value)
    with pytest.raises(ClusterError, match="run p: world_size = 12"):
        place_runs([RunLoad("q", 8, True, 1.0), RunLoad("p", 12, True, 1.0)], EIGHT)


def test_runs_of_one_process_are_packed_longest_first_and_timing_runs_never():
    loads = [RunLoad(f"r{i}", 1, True, float(s)) for i, s in enumerate([5, 1, 9, 3, 7, 2])]
    loads += [RunLoad("timing", 1, False, 4.0), RunLoad("dist", 16, True, 20.0)]
    tasks = place_runs(loads, EIGHT)
    assert [(t.topology, t.runs, t.seconds) for t in tasks] == [
        (Topology(1, 1, 4), ("r2", "r4", "r0", "r3"), 9.0),  # similar lengths share a task
        (Topology(1, 1, 4), ("r5", "r1"), 2.0),
        (Topology(1, 1, 1), ("timing",), 4.0),  # a timing measurement has its GPU to itself
        (Topology(2, 8, 1), ("dist",), 20.0),
    ]
    unpacked = place_runs(loads, dataclasses.replace(EIGHT, runs_per_task=1))
    assert [t.runs for t in unpacked[:6]] == [(f"r{i}",) for i in range(6)]  # one per task, in their order


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
    ("cpus_per_task = 0", r"cpus_per_task: 0: expected a number >= 1"),
    ('cpus_per_task = "8"', r"cpus_per_task: '8': expected an integer"),
    ("gpus_per_task = true", r"gpus_per_task: True: expected an integer"),
    ("gpus_per_task = 2", r"gpus_per_task: 2: expected 0 or 1: each process trains on one GPU"),
    ("tasks_per_node = 0", r"tasks_per_node: 0: expected a number >= 1"),
    ("runs_per_task = 0", r"runs_per_task: 0: expected a number >= 1"),
    ("collective_timeout_s = 0", r"collective_timeout_s: 0: expected a number >= 1"),
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
