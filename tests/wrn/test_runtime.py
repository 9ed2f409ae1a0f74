"""How a run computes (wrn.runtime): what the config's "auto" systems fields become on a device."""

from __future__ import annotations

import pytest
import torch

from wrn.config import RunConfig, resolve
from wrn.runtime import pick_device, runtime_settings

CPU = torch.device("cpu")


def settings(**fields):
    return runtime_settings(resolve(RunConfig(dataset="cifar10", depth=16, k=2, **fields)), CPU)


def test_auto_on_cpu_is_fp32_in_channels_last():
    s = settings()
    assert (s.device, s.precision, s.channels_last, s.tf32, s.compile) == ("cpu", "fp32", True, False, False)
    assert s.torch == torch.__version__ and s.threads == torch.get_num_threads()


@pytest.mark.parametrize("precision, channels_last, expected", [
    ("bf16", "auto", ("bf16", True)), ("fp32", "off", ("fp32", False)), ("bf16", "off", ("bf16", False)),
])
def test_explicit_settings_are_kept(precision, channels_last, expected):
    s = settings(precision=precision, channels_last=channels_last)
    assert (s.precision, s.channels_last) == expected


def test_the_recorded_settings_are_the_result_json_block():
    assert set(settings().to_dict()) == {"device", "device_name", "precision", "channels_last", "tf32", "compile",
                                         "torch", "threads"}


def test_pick_device():
    assert pick_device("cpu") == CPU
    assert pick_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert pick_device("auto") == pick_device(None)
