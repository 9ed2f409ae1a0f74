"""The ImageNet input benchmark runs end to end in quick mode and reports what it promises: every
path's rate and ratio, the training rate it is held to, the CUDA path measured or said to be skipped,
and the tensor paths' pixels against pil's (no timing is asserted: machines are noisy)."""

from __future__ import annotations

import contextlib
import io
import json
import math

import pytest
import torch

from benchmarks import input_speed
from wrn.config import RunConfig, resolve
from wrn.sizes import network_size
from wrn.throughput import assumed_rate

QUICK = ["--quick", "--max-seconds", "0.3", "--workers", "1"]


@pytest.fixture(scope="module")
def measured() -> dict:
    """One quick run as `--json` prints it, with the throughput model's default CUDA rate."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("WRN_DEVICE_TFLOPS", raising=False)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert input_speed.main([*QUICK, "--json"]) == 0
    return json.loads(out.getvalue())


def test_every_path_is_measured_or_skipped_with_its_reason(measured):
    names = [m["name"] for m in measured["modes"]]
    assert names[:4] == ["pil, 0 workers", "pil, 1 workers", "tensor on CPU, 0 workers", "tensor on CPU, 1 workers"]
    if torch.cuda.is_available():
        assert names[4:] == ["tensor on CUDA, 1 workers"] and measured["skipped"] == []
    else:
        assert names[4:] == [] and measured["skipped"] == [{"name": "tensor on CUDA, 1 workers", "reason": "no CUDA"}]
    assert measured["baseline"] == "pil, 1 workers" and measured["recipe"] == "fb.resnet.torch"
    assert (measured["images"], measured["unique_images"], measured["batch_size"]) == (48, 16, 8)


def test_rates_ratios_and_the_training_need_agree(measured):
    need, baseline = measured["train_images_per_s"], measured["baseline_img_s"]
    assert baseline == next(m["img_s"] for m in measured["modes"] if m["name"] == measured["baseline"])
    for m in measured["modes"]:
        assert isinstance(m["img_s"], float) and math.isfinite(m["img_s"]) and m["img_s"] > 0
        assert m["timed_images"] > 0
        assert m["ratio"] == pytest.approx(m["img_s"] / baseline)
        assert m["meets_training"] == (m["img_s"] >= need)
        if m["workers"] == 0 and m["device"] == "cpu":
            assert m["cores_per_gpu"] == pytest.approx(need / m["img_s"])
        else:
            assert m["cores_per_gpu"] is None


def test_the_need_is_wrn50_2s_training_rate_by_the_throughput_model(measured, monkeypatch):
    _, flops = network_size(resolve(RunConfig(dataset="imagenet", arch="wrn50_2_bottleneck", depth=50, k=2)))
    fast = assumed_rate("cuda", None, "bf16")  # the fast profile's precision asks the most of the input
    assert measured["train_images_per_s"] == pytest.approx(fast.flops / (3 * flops))
    assert 1000 < measured["train_images_per_s"] < 2500  # 22.8 GFLOP forward at 224
    assert measured["train_rate_source"] == f"throughput model: WRN-50-2 at 224, {fast.tflops:g} TFLOP/s, {fast.source}"
    monkeypatch.setenv("WRN_DEVICE_TFLOPS", str(fast.tflops / 2))
    assert input_speed.training_images_per_s() == pytest.approx(measured["train_images_per_s"] / 2)


def test_tensor_paths_agree_with_pil_to_resampler_rounding(measured):
    for m in measured["modes"]:
        if m["input_pipeline"] == "tensor":
            levels = m["grey_levels_vs_pil"]
            assert levels["max"] <= 6 and levels["mean"] < 0.1, levels
        else:
            assert m["grey_levels_vs_pil"] is None


def test_table_names_every_path_its_ratio_and_the_need(measured):
    text = input_speed.format_report(measured)
    assert "training needs" in text and "images/s per GPU" in text and "vs pil" in text
    for m in measured["modes"]:
        row = next(line for line in text.splitlines() if line.strip().startswith(m["name"]))
        assert f"{m['ratio']:.2f}x" in row and ("yes" if m["meets_training"] else "no") in row
    for s in measured["skipped"]:
        assert f"skipped: {s['reason']}" in text
    assert text.splitlines()[-1] == "ratios are against pil, 1 workers"


@pytest.mark.parametrize("argv, message", [
    (["--images", "0"], "--images: 0: expected an integer >= 1"),
    (["--max-seconds", "-1"], "--max-seconds: -1.0: expected a number > 0"),
    (["--images", "4", "--batch-size", "8"], "--images: 4: expected at least one batch (8 images)"),
])
def test_bad_arguments_are_one_line_and_exit_2(argv, message, capsys):
    assert input_speed.main(argv) == 2
    err = capsys.readouterr().err
    assert err == f"error: {message}\n"
