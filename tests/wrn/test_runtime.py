"""How a run computes (wrn.runtime): what the config's "auto" systems fields become on a device."""

from __future__ import annotations

import pytest
import torch

from wrn import cpuinfo, runtime
from wrn.config import RunConfig, resolve
from wrn.records import RuntimeSettings
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
                                         "torch", "threads", "world_size", "per_rank_batch", "backend",
                                         "input_pipeline"}


def test_a_result_written_before_data_parallelism_reads_as_one_process():
    recorded = settings().to_dict()
    for name in ("world_size", "per_rank_batch", "backend", "input_pipeline"):
        del recorded[name]
    older = RuntimeSettings.from_dict(recorded)
    assert (older.world_size, older.per_rank_batch, older.backend, older.input_pipeline) == (1, None, "none", None)


def test_pick_device():
    assert pick_device("cpu") == CPU
    assert pick_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert pick_device("auto") == pick_device(None)


@pytest.mark.parametrize("flags, native", [
    (["fpu sse2 avx avx2 fma"], False),  # an AVX2 CPU: bf16 emulated
    (["fpu avx2 avx512f avx512_bf16"], True),  # x86 AVX512-BF16
    (["fpu avx2 amx_bf16 amx_tile"], True),  # x86 AMX
    (["fp asimd sve bf16"], True),  # Arm "Features"
    ([], False),  # /proc/cpuinfo unreadable
])
def test_native_bf16_is_read_from_the_cpu_flags(monkeypatch, flags, native):
    monkeypatch.setattr(cpuinfo, "read_cpuinfo", lambda keys: flags)
    assert cpuinfo.cpu_has_native_bf16() is native


@pytest.fixture
def fresh_warnings():
    runtime._warn_once.cache_clear()
    yield
    runtime._warn_once.cache_clear()


def test_bf16_on_a_cpu_without_native_bf16_warns_once(monkeypatch, capsys, fresh_warnings):
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)
    settings(precision="bf16")
    settings(precision="bf16")  # the worker and the engine both resolve a run's settings
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "precision=bf16" in err[0] and "without native bf16" in err[0]
    assert runtime.cpu_capability() in err[0]


@pytest.mark.parametrize("precision, native", [("fp32", False), ("auto", False), ("bf16", True)])
def test_no_warning_where_bf16_is_not_emulated(monkeypatch, capsys, fresh_warnings, precision, native):
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: native)
    settings(precision=precision)
    assert capsys.readouterr().err == ""
