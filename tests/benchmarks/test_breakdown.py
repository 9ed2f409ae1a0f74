"""The profile summary files each operator under the kind of work it does (names as torch.profiler
reports them on CPU and CUDA), so that the breakdown's shares mean what they say."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from benchmarks.breakdown import CATEGORIES, DATA_RANGE, category, summarize


@pytest.mark.parametrize("name, ranges, expected", [
    ("aten::mkldnn_convolution", (), "convolution forward"),
    ("aten::cudnn_convolution", (), "convolution forward"),
    ("aten::_slow_conv2d_forward", (), "convolution forward"),
    ("aten::_slow_conv2d_backward", (), "convolution backward"),
    ("aten::conv2d", (), "convolution forward"),
    ("aten::_convert_indices_from_coo_to_csr", (), "other operators"),
    ("aten::convolution_backward", ("autograd::engine::evaluate_function: ConvolutionBackward0",), "convolution backward"),
    ("aten::native_batch_norm", (), "batch norm"),
    ("aten::native_batch_norm_backward", (), "batch norm"),
    ("aten::cudnn_batch_norm_backward", (), "batch norm"),
    ("aten::_foreach_add_", ("Optimizer.step#SGD.step",), "optimizer"),
    ("aten::zero_", ("Optimizer.zero_grad#SGD.zero_grad",), "optimizer"),
    ("aten::index_select", (DATA_RANGE,), "data pipeline"),
    ("aten::flip", ("outer", DATA_RANGE, "inner"), "data pipeline"),
    ("aten::threshold_backward", (), "other operators"),
    ("aten::add", (), "other operators"),
    ("## Call CompiledFxGraph abc ##", (), "other operators"),
])
def test_category(name, ranges, expected):
    assert expected in CATEGORIES
    assert category(name, ranges) == expected


def _event(name, cpu_us, device_us=0.0, parent=None):
    return SimpleNamespace(name=name, self_cpu_time_total=cpu_us, self_device_time_total=device_us, cpu_parent=parent)


@pytest.mark.parametrize("device, conv, opt, data", [("cpu", 100.0, 7.0, 3.0), ("cuda", 40.0, 2.0, 1.0)])
def test_summarize_sums_self_time_and_skips_wrapping_ranges(device, conv, opt, data):
    step = _event("Optimizer.step#SGD.step", 50.0, 0.0)
    data_range = _event(DATA_RANGE, 9.0, 0.0)
    wrapper = _event("autograd::engine::evaluate_function: ConvolutionBackward0", 5.0, 0.0)
    events = [
        step, data_range, wrapper,
        _event("aten::mkldnn_convolution", 100.0, 40.0),
        _event("aten::convolution_backward", 200.0, 80.0, parent=wrapper),
        _event("aten::_foreach_mul_", 7.0, 2.0, parent=step),
        _event("aten::gather", 3.0, 1.0, parent=data_range),
        _event("aten::empty", 0.0, 0.0),
    ]
    totals = summarize(events, torch.device(device))
    assert list(totals) == list(CATEGORIES)
    assert totals["convolution forward"] == conv
    assert totals["convolution backward"] == 2 * conv
    assert totals["optimizer"] == opt and totals["data pipeline"] == data
    assert totals["batch norm"] == 0 and totals["other operators"] == 0  # the ranges' own time is not counted
