"""`python -m benchmarks.gpu_check`: the quick CPU mode passes every required check for real (what CI
runs, so the GPU check cannot rot), and the exit code follows the required checks: a failing, raising
or missing one makes it non-zero, one skipped with its reason does not."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import check_context, device_checks, device_speed, engine_checks, gpu_check, train_measure
from experiments import rates
from wrn import train as engine
from wrn.runtime import bind_device

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory) -> tuple[int, dict, str]:
    """The whole quick check on this CPU (about a minute, more on a cold torch.compile cache)."""
    out = tmp_path_factory.mktemp("gpu_check") / "check.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--device", "cpu", "--quick", "--out",
                           str(out)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    return done.returncode, json.loads(out.read_text()), done.stdout


@pytest.mark.slow
def test_the_quick_cpu_check_passes_every_required_check(quick_report):
    code, report, _ = quick_report
    checks = {c["name"]: c for c in report["checks"]}
    assert code == 0, [c for c in report["checks"] if not c["passed"]]
    assert len(checks) >= 8 and set(checks) == set(device_checks.CHECKS)
    assert report["verdict"]["failed"] == report["verdict"]["missing"] == []
    assert set(report["verdict"]["passed"]) == set(gpu_check.REQUIRED["cpu"]) and len(report["verdict"]["passed"]) >= 8
    assert checks["no_host_sync_per_step"]["passed"] is None and "CUDA only" in checks["no_host_sync_per_step"]["detail"]
    for check in checks.values():
        assert check["detail"] and check["seconds"] >= 0


@pytest.mark.slow
def test_the_report_names_the_machine_and_measures_every_kind(quick_report):
    _, report, table = quick_report
    env = report["environment"]
    assert {"device_name", "driver", "torch", "cuda", "cudnn", "nccl"} <= set(env) and env["device"] == "cpu"
    measured = {m["name"]: m for m in report["measurements"]}
    assert set(measured) | set(report["skipped_measurements"]) == {"wrn28_10_paper", "wrn28_10_fast",
                                                                    "wrn40_2_packed", "imagenet_input"}
    for name in ("wrn28_10_paper", "wrn28_10_fast", "wrn40_2_packed"):
        if name in measured:
            assert measured[name]["img_s"] > 0 and 0 < measured[name]["mfu"] and "error" not in measured[name]
    assert measured["wrn28_10_paper"]["precision"] == "fp32" and not measured["wrn28_10_paper"]["tf32"]
    assert "required: 9 passed, 0 failed" in table and "paper_steps_match_cpu" in table


def fake_checks(outcomes: dict) -> dict:
    def check(outcome):
        def run(ctx):
            if isinstance(outcome, Exception):
                raise outcome
            return outcome
        return run
    return {name: check(outcome) for name, outcome in outcomes.items()}


@pytest.fixture
def fake_run(monkeypatch, capsys):
    """gpu_check.main in this process with stand-in checks and no measurements; returns (exit code, JSON)."""
    monkeypatch.setattr(device_speed, "measure_all", lambda *a, **k: ([], []))

    def run(outcomes: dict, *argv: str) -> tuple[int, dict]:
        monkeypatch.setattr(device_checks, "CHECKS", fake_checks(outcomes))
        monkeypatch.setattr(gpu_check, "ALL_CHECKS", tuple(outcomes))
        code = gpu_check.main(["--device", "cpu", "--quick", "--json", *argv])
        return code, json.loads(capsys.readouterr().out)

    return run


def passing(**overrides) -> dict:
    outcomes = {name: (True, "fine") for name in gpu_check.REQUIRED["cpu"]}
    outcomes.update(overrides)
    return outcomes


def test_all_required_checks_passing_exit_0(fake_run):
    code, report = fake_run(passing())
    assert code == 0 and report["verdict"]["failed"] == []


def test_a_failing_check_exits_non_zero(fake_run):
    code, report = fake_run(passing(resume_is_exact=(False, "differs by 1e-3")))
    assert code == gpu_check.EXIT_FAILED and report["verdict"]["failed"] == ["resume_is_exact"]
    assert next(c for c in report["checks"] if c["name"] == "resume_is_exact")["detail"] == "differs by 1e-3"


def test_a_check_that_raises_has_failed_with_its_message(fake_run):
    code, report = fake_run(passing(jpeg_decoders_agree=RuntimeError("nvJPEG: no decoder")))
    check = next(c for c in report["checks"] if c["name"] == "jpeg_decoders_agree")
    assert code == gpu_check.EXIT_FAILED and check["passed"] is False
    assert check["detail"] == "raised RuntimeError: nvJPEG: no decoder"


def test_a_missing_required_check_exits_non_zero(fake_run):
    outcomes = passing()
    del outcomes["compiled_trains"]
    code, report = fake_run(outcomes)
    assert code == gpu_check.EXIT_FAILED and report["verdict"]["missing"] == ["compiled_trains"]


def test_a_check_skipped_with_its_reason_is_not_missing(fake_run):
    code, report = fake_run(passing(data_parallel_equals_one_process=(None, "needs 2 GPUs")))
    assert code == 0 and report["verdict"]["skipped"] == ["data_parallel_equals_one_process"]


def test_checks_past_the_budget_are_missing(fake_run, monkeypatch):
    slow = passing()
    clock = iter(range(0, 10_000, 100))  # every reading of the clock 100 s later
    monkeypatch.setattr(gpu_check.time, "monotonic", lambda: next(clock))
    code, report = fake_run(slow, "--budget-s", "250")
    assert code == gpu_check.EXIT_FAILED and report["verdict"]["missing"]
    assert len(report["checks"]) < len(slow)


def test_a_bad_budget_is_one_line(capsys):
    assert gpu_check.main(["--budget-s", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--budget-s" in err[0]


# ------------------------------------------------------------------------------------------------
# The CUDA-only paths of the check, on the stand-in node of tests/conftest.py


def test_the_sync_check_runs_an_epoch_in_error_mode_on_a_gpu(cuda_node, tmp_path):
    standin = cuda_node(None, local_rank=0)
    ctx = check_context.Context(bind_device("cuda"), check_context.QUICK, tmp_path)
    passed, detail = engine_checks.no_host_sync_per_step(ctx)
    assert passed, detail
    assert [e["mode"] for e in standin.events if e["event"] == "sync_debug_mode"] == [2, 0]


def test_a_step_that_waits_for_the_device_fails_the_sync_check(cuda_node, tmp_path, monkeypatch):
    cuda_node(None, local_rank=0)
    real_step = engine.training_step

    def waiting_step(*args):
        loss, out = real_step(*args)
        torch.cuda.synchronize()  # what a loss.item() in the step would do
        return loss, out

    monkeypatch.setattr(engine, "training_step", waiting_step)
    ctx = check_context.Context(bind_device("cuda"), check_context.QUICK, tmp_path)
    passed, detail = engine_checks.no_host_sync_per_step(ctx)
    assert passed is False and "synchronizing CUDA operation" in detail


def test_a_gpu_environment_and_a_training_measurement(cuda_node, tmp_path, monkeypatch):
    monkeypatch.setattr(train_measure, "PEAK_MATMUL_SIZE", {"cpu": 128, "cuda": 128})  # a GPU's 8192 on a CPU
    cuda_node(None, local_rank=2)
    device = bind_device("cuda")
    env = gpu_check.environment(device)
    assert env["device_name"] == "Stand-in GPU 2" and env["gpus"] == 4 and env["cuda"] and env["nccl"]
    sizes = device_speed.QUICK
    m = device_speed.engine_epoch("wrn28_10_paper", "WRN-10-1", device_speed.PAPER, sizes, device, tmp_path,
                                  deadline=float("inf"), peaks={})
    assert m["img_s"] > 0 and m["peak_memory_gb"] == 0 and m["precision"] == "fp32" and 0 < m["mfu"]


def test_a_gpus_full_size_rates_are_kept_for_its_dry_runs(cuda_node, tmp_path, monkeypatch):
    """The paper-profile measurement of a GPU, and a packed network alone, go to the rates file under
    the GPU's name; a quick check or a CPU's keeps nothing (a few dozen images say nothing of a run)."""
    monkeypatch.setattr(train_measure, "PEAK_MATMUL_SIZE", {"cpu": 128, "cuda": 128})
    cuda_node(None, local_rank=0)
    device = bind_device("cuda")
    env = gpu_check.environment(device)
    m = device_speed.engine_epoch("wrn28_10_paper", "WRN-10-1", device_speed.PAPER, device_speed.QUICK, device,
                                  tmp_path, deadline=float("inf"), peaks={})
    packed = {"name": "wrn40_2_packed", "model": "WRN-40-2", "compute_mode": "fp32", "forward_flops": 328 * 10**6,
              "tflops": 9.0, "alone_tflops": 4.0}
    report = {"environment": env, "quick": False, "measurements": [m, packed, {"name": "imagenet_input"}]}
    kept = gpu_check.measurements(report)
    assert [(k.device, k.mode, k.network, k.source) for k in kept] == [
        ("Stand-in GPU 0", "fp32", "WRN-10-1", "benchmarks.gpu_check"), ("Stand-in GPU 0", "fp32", "WRN-40-2",
                                                                         "benchmarks.gpu_check")]
    assert kept[0].tflops == m["tflops"] and kept[1].tflops == 4.0  # the packed network's rate alone
    assert gpu_check.measurements({**report, "quick": True}) == []
    assert gpu_check.measurements({**report, "environment": {**env, "device": "cpu"}}) == []
    path = rates.record_measurements(tmp_path / "results", kept)
    assert rates.read_measurements(tmp_path / "results") == sorted(kept, key=lambda k: k.key)
    assert path == tmp_path / "results" / "rates.json"

