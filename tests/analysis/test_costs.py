"""Estimated against measured: each device's finished runs, estimated as a dry run would have (the
rates file or the assumption, never the runs themselves), against their recorded training time."""

from __future__ import annotations

import pytest
from fabricate import write_run

from analysis.collect import collect_spec
from analysis.costs import cost_checks
from experiments import rates
from experiments.plan import expand
from experiments.spec import load_spec
from wrn.sizes import network_size
from wrn.throughput import assumed_rate, train_flops

H100 = "NVIDIA H100 80GB HBM3"


@pytest.fixture(autouse=True)
def _no_rate_in_the_environment(monkeypatch):
    monkeypatch.delenv(rates.ENV_TFLOPS, raising=False)


def _finished(tmp_path, device_name="NVIDIA H100 80GB HBM3", device="cuda", seeds=(0, 1)):
    spec = load_spec("table_block_type")
    runs = [p for p in expand(spec, "paper") if p.label == "WRN-28-2" and p.config.seed in seeds]
    for p in runs:
        write_run(tmp_path, spec.name, p.config, epochs=200, epoch_time_s=30.0, device_name=device_name, device=device)
    write_run(tmp_path, spec.name, expand(spec, "paper")[0].config, state="interrupted", device_name=device_name)
    return spec, runs


def test_each_finished_run_is_estimated_at_its_devices_assumed_rate_against_its_training_time(tmp_path):
    spec, runs = _finished(tmp_path)
    (check,) = cost_checks(collect_spec(spec, tmp_path), None)
    rate = assumed_rate("cuda", H100, "fp32")
    flops = 2 * 1_000_000  # the fabricated result's forward FLOPs (2 x its parameters)
    expected = sum(train_flops(p.config, flops) for p in runs) / rate.flops
    assert (check.device_type, check.runs, check.devices) == ("cuda", 2, (H100,))
    assert check.measured_s == pytest.approx(2 * 200 * 30.0) and check.estimated_s == pytest.approx(expected)
    assert check.ratio == pytest.approx(check.measured_s / expected)
    assert check.rate_sources == (f"{rate.tflops:.3g} TFLOP/s in fp32, {rate.source}",)
    sentence = check.sentence()
    assert sentence.startswith(f"time: 2 finished runs on {H100} trained 3.33 GPU-hours against ")
    assert f"({check.ratio:.2f}x the estimate; training alone" in sentence


def test_a_measured_rate_in_the_rates_file_is_what_the_estimate_used(tmp_path):
    spec, runs = _finished(tmp_path / "results")
    _, flops = network_size(runs[0].config)
    rates.record_measurements(tmp_path / "results", [rates.Measurement(
        H100, "fp32", "WRN-28-2", 32, flops, 12.5, "2026-03-01T00:00:00Z", "benchmarks.gpu_check")])
    (check,) = cost_checks(collect_spec(spec, tmp_path / "results"), tmp_path / "results")
    assert check.rate_sources == (f"12.5 TFLOP/s in fp32, measured on {H100} (WRN-28-2, 2026-03-01, benchmarks.gpu_check)",)


def test_devices_are_checked_apart_and_no_finished_run_is_no_check(tmp_path):
    spec, _ = _finished(tmp_path, seeds=(0,))
    _finished(tmp_path, device_name="Intel(R) Xeon(R)", device="cpu", seeds=(1,))
    checks = cost_checks(collect_spec(spec, tmp_path), None)
    assert [(c.device_type, c.runs) for c in checks] == [("cpu", 1), ("cuda", 1)]
    assert "CPU-" in checks[0].sentence() and "GPU-" in checks[1].sentence()
    assert cost_checks(collect_spec(spec, tmp_path / "empty"), None) == []
