"""The speed benchmark runs end to end on CPU and reports what it promises (correctness only: no
timing is asserted, machines are noisy; speed lives in the benchmark's own output)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from benchmarks import train_measure, train_report, train_speed
from experiments import rates
from wrn.config import RunConfig, resolve

REQUIRED = ("suite_img_s", "baseline_img_s", "ratio", "data_img_s", "baseline_data_img_s", "data_ratio",
            "achieved_flops", "peak_flops")
MODE_KEYS = ("precision", "channels_last", "compile", "suite_img_s", "ratio", "epoch_50k_s",
             "achieved_flops", "peak_flops", "mfu", "device_tflops", "bounded", "emulated")


def positive(x) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


def test_every_required_key_and_consistent_ratios(measured):
    r = measured
    for key in REQUIRED:
        assert positive(r[key]), (key, r[key])
    assert [(m["precision"], m["channels_last"]) for m in r["modes"]] == [("fp32", True), ("bf16", True)]  # auto: NHWC on CPU (measured faster)
    for m in r["modes"]:
        assert set(MODE_KEYS) <= set(m)
        assert m["ratio"] == pytest.approx(m["suite_img_s"] / r["baseline_img_s"])
        assert m["achieved_flops"] == pytest.approx(3 * r["forward_flops"] * m["suite_img_s"])
        assert m["mfu"] == pytest.approx(m["achieved_flops"] / m["peak_flops"])
        assert m["device_tflops"] == pytest.approx(m["achieved_flops"] / 1e12)
        assert m["epoch_50k_s"] == pytest.approx(50_000 / m["suite_img_s"])
    fastest = max(r["modes"], key=lambda m: m["suite_img_s"])
    assert r["suite_img_s"] == fastest["suite_img_s"] and r["precision"] == fastest["precision"]
    assert r["data_ratio"] == pytest.approx(r["data_img_s"] / r["baseline_data_img_s"])
    assert r["params"] > 0 and r["forward_flops"] > 0 and r["device"] == "cpu"
    assert (r["train_images"], r["batch_size"], r["baseline_workers"]) == (32, 16, 0)
    assert r["concurrent"] is None


def test_table_names_every_measurement(measured):
    text = train_report.format_report(measured)
    for needle in ("baseline: DataLoader(0)+PIL, fp32 NCHW", "suite: fp32, channels_last", "suite: bf16, channels_last",
                   "data pipeline alone", "suite: wrn.data.make_pipeline",
                   "where a step's time goes", "convolution backward", "if nothing else took time"):
        assert needle in text


def test_breakdown_accounts_for_the_profiled_step(measured):
    from benchmarks.breakdown import CATEGORIES, UNATTRIBUTED

    b, r = measured["breakdown"], measured
    assert b["steps"] == 3 and positive(b["step_ms"])
    assert list(b["ms_per_step"]) == [*CATEGORIES, UNATTRIBUTED]
    assert all(ms >= 0 for ms in b["ms_per_step"].values())
    for name in ("convolution forward", "convolution backward", "batch norm", "optimizer", "data pipeline"):
        assert b["ms_per_step"][name] > 0, name  # each kind of work is found where it runs
    assert sum(b["ms_per_step"].values()) == pytest.approx(b["step_ms"], rel=0.05)
    conv_s = (b["ms_per_step"]["convolution forward"] + b["ms_per_step"]["convolution backward"]) / 1000
    assert b["convolution_share"] == pytest.approx(conv_s * 1000 / b["step_ms"])
    assert b["convolution_bound_img_s"] == pytest.approx(r["batch_size"] / conv_s)
    assert b["convolution_tflops"] == pytest.approx(3 * r["forward_flops"] * r["batch_size"] / conv_s / 1e12)
    assert b["convolution_bound_ratio"] == pytest.approx(b["convolution_bound_img_s"] / r["baseline_img_s"])


@pytest.mark.slow
def test_json_output_and_concurrent_processes(capsys, tiny):
    assert train_speed.main([*tiny, "--json", "--precision", "fp32", "--no-baseline", "--concurrent", "2"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, "--json prints exactly one line, one object"
    r = json.loads(out[0])
    assert r["baseline_img_s"] is None and r["ratio"] is None and r["data_ratio"] is None
    assert r["breakdown"] is None  # only when asked
    assert positive(r["suite_img_s"]) and positive(r["data_img_s"])
    c = r["concurrent"]
    assert c["processes"] == 2 and len(c["per_process_img_s"]) == 2
    assert all(positive(x) for x in c["per_process_img_s"])
    assert c["total_img_s"] == pytest.approx(sum(c["per_process_img_s"]))
    assert c["ratio"] == pytest.approx(c["total_img_s"] / r["suite_img_s"])


def test_each_modes_rate_is_kept_for_the_dry_runs_of_this_device(capsys, tiny, tmp_path):
    """The rates file gets this device's fp32 rate of the network, which a later run replaces, and the
    rate book of this CPU finds it for that network and, the nearest measured, for another."""
    assert train_speed.main([*tiny, "--json", "--precision", "fp32", "--no-baseline"]) == 0
    r = json.loads(capsys.readouterr().out)
    (kept,) = rates.read_measurements(tmp_path / "results")
    assert (kept.device, kept.mode, kept.network, kept.image_size, kept.source) == (
        r["device_name"], "fp32", "WRN-10-1", 32, "benchmarks.train_speed")
    assert kept.tflops == pytest.approx(r["modes"][0]["device_tflops"]) and r["rates_file"].endswith("rates.json")
    assert train_speed.main([*tiny, "--json", "--precision", "fp32", "--no-baseline"]) == 0
    assert len(rates.read_measurements(tmp_path / "results")) == 1  # replaced, not added
    book = rates.RateBook("cpu", r["device_name"], rates.read_measurements(tmp_path / "results"))
    cfg = resolve(RunConfig(depth=10, k=1, preprocessing="meanstd"))
    assert book.rate(cfg, "WRN-10-1", r["forward_flops"]).source.startswith(f"measured on {r['device_name']} (WRN-10-1")
    assert "nearest in size to WRN-28-10" in book.rate(resolve(RunConfig(depth=28, k=10)), "WRN-28-10", 5 * 10**9).source


@pytest.mark.parametrize("argv, field", [
    (["--model", "WRN-15-2"], "depth"),
    (["--model", "ResNet-9"], "label"),
    (["--train-images", "8", "--batch-size", "16"], "--train-images"),
    (["--repeats", "0"], "--repeats"),
    (["--concurrent", "-1"], "--concurrent"),
    (["--device", "tpu"], "--device"),
    (["--precision", "fp16"], "--precision"),
    (["--max-seconds", "0"], "--max-seconds"),
    (["--device", "cuda:0" if not torch.cuda.is_available() else "mps"], "--device"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, tiny, argv, field):
    assert train_speed.main([*tiny, *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and field in err[0] and "Traceback" not in err[0]


@pytest.mark.parametrize("native, measured_modes, skipped", [(False, ["fp32"], ("bf16",)), (True, ["fp32", "bf16"], ())])
def test_default_modes_leave_out_bf16_where_the_cpu_would_emulate_it(monkeypatch, tiny, native, measured_modes,
                                                                       skipped):
    monkeypatch.setattr(train_speed, "cpu_has_native_bf16", lambda: native)
    bench = train_speed.bench_setup(train_speed.parse_args([*tiny, "--device", "cpu"]))
    assert [m.precision for m in bench.modes] == measured_modes and bench.skipped == skipped
    asked = train_speed.bench_setup(train_speed.parse_args([*tiny, "--device", "cpu", "--precision", "bf16"]))
    assert [m.precision for m in asked.modes] == ["bf16"] and asked.skipped == ()  # asked for: measured, bounded


def test_the_report_names_the_cpu_features_skipped_modes_and_bounds(measured):
    assert measured["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert isinstance(measured["native_bf16"], bool) and measured["bounded"] == []
    text = train_report.format_report({**measured, "skipped_precisions": ["bf16"], "bounded": ["baseline training"]})
    assert measured["cpu_capability"] in text.splitlines()[0]
    assert "bf16" in text and "skipped: no native bf16 on this CPU" in text
    assert "bounded at" in text and "baseline training" in text


def test_a_deadline_stops_the_epochs_but_keeps_one_timed():
    calls = []
    seconds, bounded = train_measure.median_epoch_seconds(lambda: calls.append(1), torch.device("cpu"), warmup=2,
                                                          repeats=5, deadline=0.0)
    assert (len(calls), bounded) == (2, True) and seconds >= 0  # one warm-up, one timed
    calls.clear()
    _, bounded = train_measure.median_epoch_seconds(lambda: calls.append(1), torch.device("cpu"), warmup=2, repeats=5)
    assert (len(calls), bounded) == (7, False)


def test_a_suite_mode_past_its_bound_stops_and_says_so(capsys, tiny):
    assert train_speed.main([*tiny, "--json", "--precision", "fp32", "--no-baseline", "--max-seconds", "1e-9"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: no suite mode finished a timed epoch within --max-seconds 1e-09")
    assert "suite fp32, channels_last" in err[-1]
