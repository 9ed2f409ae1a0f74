"""The rate of each estimate: the throughput model's assumptions per device and compute mode, the
rates file (round trip, replacement, a damaged file), finished runs as measurements, the order of
precedence `--help` states, a cluster profile's GPU, and the dry run that says which rate it used."""

from __future__ import annotations

import json
import math

import pytest
from fabricate import write_run

from experiments import rates, run, store
from experiments.clusters import ClusterError, load_cluster
from experiments.estimate import estimate
from experiments.plan import expand
from experiments.spec import load_spec
from wrn.config import RunConfig, resolve
from wrn.errors import UserError
from wrn.throughput import DEFAULT_GPU, DEVICE_PEAKS, SUSTAINED_FRACTION, assumed_rate, compute_mode, device_class

H100 = "NVIDIA H100 80GB HBM3"


@pytest.fixture(autouse=True)
def _no_rate_in_the_environment(monkeypatch):
    monkeypatch.delenv(rates.ENV_TFLOPS, raising=False)


def cfg(**fields) -> RunConfig:
    return resolve(RunConfig(**{"dataset": "cifar10", "depth": 16, "k": 4, **fields}))


def measurement(tflops: float, network: str = "WRN-16-4", device: str = H100, mode: str = "fp32",
                flops: int = 400 * 10**6, when: str = "2026-01-01T00:00:00Z", source: str = "benchmarks.gpu_check"):
    return rates.Measurement(device, mode, network, 32, flops, tflops, when, source)


@pytest.mark.parametrize("fields, device_type, mode", [
    ({}, "cuda", "fp32"), ({"tf32": True}, "cuda", "tf32"), ({"precision": "bf16"}, "cuda", "bf16"),
    ({"precision": "bf16", "tf32": True}, "cuda", "bf16"), ({"precision": "auto"}, "cuda", "bf16"),
    ({"tf32": True}, "cpu", "fp32"), ({"precision": "auto"}, "cpu", "fp32"),
])
def test_the_compute_mode_is_what_the_run_multiplies_in(fields, device_type, mode):
    assert compute_mode(cfg(**fields), device_type) == mode


@pytest.mark.parametrize("name, cls", [("NVIDIA A100-SXM4-80GB", "A100"), ("A100-80GB", "A100"),
                                       ("NVIDIA A100 80GB PCIe", "A100"), (H100, "H100-SXM"),
                                       ("NVIDIA H100 PCIe", "H100-PCIe"), ("NVIDIA H200", "H200"),
                                       ("NVIDIA A10", "A10"), ("Tesla V100-SXM2-32GB", "V100"),
                                       ("NVIDIA L40S", "L40S"), ("Stand-in GPU 0", None)])
def test_a_gpus_name_gives_its_class(name, cls):
    assert device_class(name) == cls


def test_the_assumption_is_the_datasheet_peak_times_the_sustained_share_per_mode():
    for mode in ("fp32", "tf32", "bf16"):
        rate = assumed_rate("cuda", "A100-80GB", mode)
        assert rate.flops == pytest.approx(DEVICE_PEAKS["A100"][mode] * SUSTAINED_FRACTION[mode] * 1e12)
        assert rate.source.startswith(f"assumed for an A100 in {mode}: datasheet peak")
    assert assumed_rate("cuda", None, "fp32") == assumed_rate("cuda", DEFAULT_GPU, "fp32")
    unknown = assumed_rate("cuda", "Stand-in GPU 0", "fp32")
    assert unknown.flops == assumed_rate("cuda", None, "fp32").flops and "not in the model" in unknown.source
    assert assumed_rate("cpu", None, "fp32").source.startswith("assumed for a CPU")


def test_the_rates_file_round_trips_and_keeps_the_latest_of_each_key(tmp_path):
    first = [measurement(20.0), measurement(90.0, mode="bf16")]
    rates.record_measurements(tmp_path, first)
    assert rates.read_measurements(tmp_path) == sorted(first, key=lambda m: m.key)
    newer = measurement(25.0, device="NVIDIA H100 80GB HBM3", when="2026-02-01T00:00:00Z")
    rates.record_measurements(tmp_path, [newer])
    kept = rates.read_measurements(tmp_path)
    assert len(kept) == 2 and newer in kept and first[0] not in kept
    assert json.loads((tmp_path / "rates.json").read_text())["measurements"][0]["device"] == H100
    assert rates.read_measurements(tmp_path / "nowhere") == []


def test_a_damaged_rates_file_is_one_line_naming_it(tmp_path):
    (tmp_path / "rates.json").write_text('{"measurements": [{"device": 1}]')
    with pytest.raises(UserError, match=r"rates.json: not a rates file .*remove it"):
        rates.read_measurements(tmp_path)


def test_precedence_given_then_environment_then_measured_then_assumed(monkeypatch):
    book = rates.RateBook("cuda", "H100", [measurement(20.0, device="NVIDIA H100 80GB HBM3")])
    assert book.rate(cfg(), "WRN-16-4", 400 * 10**6).source.startswith(f"measured on {H100} (WRN-16-4")
    assert book.rate(cfg(precision="bf16"), "WRN-16-4", 400 * 10**6).source.startswith("assumed for an H100-SXM in bf16")
    monkeypatch.setenv(rates.ENV_TFLOPS, "33")
    env = rates.RateBook("cuda", "H100", book.measurements)
    assert env.rate(cfg(), "WRN-16-4", 1).tflops == 33 and "WRN_DEVICE_TFLOPS" in env.rate(cfg(), "WRN-16-4", 1).source
    given = rates.RateBook("cuda", "H100", book.measurements, given_tflops=7.0)
    assert given.rate(cfg(), "WRN-16-4", 1).tflops == 7.0 and "--device-tflops 7" in given.rate(cfg(), "x", 1).source
    monkeypatch.setenv(rates.ENV_TFLOPS, "many")
    with pytest.raises(UserError, match="WRN_DEVICE_TFLOPS='many': expected a number > 0"):
        rates.RateBook("cuda", None, [])


def test_an_unmeasured_network_takes_the_rate_of_the_nearest_in_size_on_that_device():
    small, large = measurement(5.0, "WRN-16-4", flops=400 * 10**6), measurement(30.0, "WRN-28-10", flops=5 * 10**9)
    book = rates.RateBook("cuda", "H100-SXM", [small, large, measurement(99.0, "WRN-40-4", device="NVIDIA A100-SXM4-80GB",
                                                                            flops=1300 * 10**6)])
    near = book.rate(cfg(depth=22, k=8), "WRN-22-8", 2400 * 10**6)  # nearer 5 GFLOP than 0.4 on a log scale
    assert near.tflops == 30.0 and "nearest in size to WRN-22-8" in near.source and "WRN-28-10" in near.source
    assert book.rate(cfg(depth=10, k=1), "WRN-10-1", 50 * 10**6).tflops == 5.0  # the A100's never counts


def test_finished_runs_are_measurements_of_their_device(tmp_path):
    network = cfg()
    write_run(tmp_path, "s", network, device_name=H100, device="cuda", images_per_s=2000.0, params=1000)
    write_run(tmp_path, "s", cfg(seed=1), state="diverged", device_name=H100, device="cuda")
    write_run(tmp_path, "s", cfg(seed=2), state="interrupted", device_name=H100, device="cuda")
    (found,) = rates.run_measurements(store.all_runs(tmp_path))
    assert (found.device, found.mode, found.network, found.source.split()[0]) == (H100, "fp32", "WRN-16-4", "run")
    assert found.tflops == pytest.approx(3 * 2000 * 2000.0 / 1e12)  # fabricated flops: 2 x params


def test_the_rates_of_the_default_folders_are_shared_by_every_profile(tmp_path, monkeypatch):
    from experiments.profiles import load_profile

    monkeypatch.chdir(tmp_path)
    for name in ("paper", "smoke", "fast"):
        profile = load_profile(name)
        assert rates.rates_folder(profile.default_results(), profile) == (tmp_path / "results")
    assert rates.rates_folder(tmp_path / "mine", load_profile("smoke")) == tmp_path / "mine"


def test_a_cluster_profile_names_its_gpu_and_a_wrong_one_is_one_line(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text('gpu = "A100-80GB"\n')
    assert load_cluster(good).gpu == "A100-80GB"
    bad = tmp_path / "bad.toml"
    bad.write_text('gpu = "Voodoo 5"\n')
    with pytest.raises(ClusterError, match=r"bad.toml: gpu: 'Voodoo 5': a GPU the throughput model knows"):
        load_cluster(bad)
    assert [device_class(load_cluster(name).gpu) for name in ("example_gpu", "example_8gpu")] == ["A100", "H100-SXM"]
    assert load_cluster("local").gpu is None and load_cluster("local").gpus_per_task == 0


def _dry_run_json(capsys, *argv) -> list[dict]:
    assert run.main([*argv, "--dry-run", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_the_paper_profile_is_estimated_in_fp32_and_the_fast_one_at_bf16s_rate(capsys, tmp_path):
    """Table 2 on the default GPU: the paper profile's fp32 against the fast profile's bf16, by the
    ratio of their assumed rates, not by a label."""
    paper = _dry_run_json(capsys, "table_block_type", "--results", str(tmp_path / "p"))
    fast = _dry_run_json(capsys, "table_block_type", "--profile", "fast", "--results", str(tmp_path / "f"))
    assert {r["compute_mode"] for r in paper} == {"fp32"} and {r["compute_mode"] for r in fast} == {"bf16"}
    fp32, bf16 = assumed_rate("cuda", None, "fp32"), assumed_rate("cuda", None, "bf16")
    assert {r["tflops"] for r in paper} == {fp32.tflops} and {r["rate_source"] for r in paper} == {fp32.source}
    ratio = sum(r["est_hours"] for r in paper) / sum(r["est_hours"] for r in fast)
    assert ratio == pytest.approx(bf16.flops / fp32.flops)


def test_a_clusters_gpu_sets_the_assumption_and_one_without_falls_back(capsys, tmp_path):
    cluster = tmp_path / "h100.toml"
    cluster.write_text('gpu = "H100 SXM"\n')
    on_h100 = _dry_run_json(capsys, "table_block_type", "--executor", "slurm", "--cluster", str(cluster))
    assert {r["rate_source"] for r in on_h100} == {assumed_rate("cuda", "H100", "fp32").source}
    plain = tmp_path / "plain.toml"
    plain.write_text('partition = "gpu"\n')
    default = _dry_run_json(capsys, "table_block_type", "--executor", "slurm", "--cluster", str(plain))
    assert {r["rate_source"] for r in default} == {assumed_rate("cuda", None, "fp32").source}
    cpu_nodes = _dry_run_json(capsys, "table_block_type", "--executor", "slurm", "--cluster", "local")
    assert {r["est_device"] for r in cpu_nodes} == {"cpu"}


def test_a_partly_finished_spec_estimates_the_rest_from_its_measured_runs(capsys, tmp_path):
    """Two runs of Table 2 finished on an H100: the dry run for that GPU estimates their network at
    its measured rate, the other networks at the nearest one's, not at the assumption."""
    spec = load_spec("table_block_type")
    planned = expand(spec, "paper")
    finished = [p for p in planned if p.label == "WRN-28-2"][:2]
    for p in finished:
        write_run(tmp_path / "results", spec.name, p.config, device_name=H100, device="cuda", images_per_s=5000.0)
    cluster = tmp_path / "h100.toml"
    cluster.write_text('gpu = "H100"\n')
    rows = _dry_run_json(capsys, "table_block_type", "--executor", "slurm", "--cluster", str(cluster),
                         "--results", str(tmp_path / "results"))
    mine = [r for r in rows if r["label"] == "WRN-28-2"]
    assert all(r["rate_source"].startswith(f"measured on {H100} (WRN-28-2") for r in mine)
    others = [r for r in rows if r["label"] != "WRN-28-2"]
    assert all("nearest in size" in r["rate_source"] for r in others)
    measured = rates.run_measurements(store.all_runs(tmp_path / "results"))[0].tflops
    assert {r["tflops"] for r in rows} == {measured}
    book = rates.RateBook("cuda", "H100", [])
    assumed_total = sum(e.est_seconds for e in estimate(planned, book)) / 3600
    assert sum(r["est_hours"] for r in rows) == pytest.approx(assumed_total * book.rate(
        planned[0].config, "x", 1).tflops / measured)
    assert math.isfinite(measured) and measured > 0
