"""Progress of long loops: a log gets a line every few seconds, also while one step runs for minutes
(Figure 4's preact-ResNet-1001 on a CPU), and a stopped measurement keeps nothing and says so."""

from __future__ import annotations

import io
import time

import pytest

from wrn.config import RunConfig
from wrn.progress import PREFIX, Progress, progress_meter
from wrn.timing import MeasurementInterrupted, measure_step_time
from wrn.train import TrainingInterrupted


def wait_for_text(out: io.StringIO, text: str) -> None:
    deadline = time.monotonic() + 20
    while text not in out.getvalue():
        assert time.monotonic() < deadline, f"no {text!r} in {out.getvalue()!r}"
        time.sleep(0.01)


def test_a_log_gets_lines_while_a_long_step_runs():
    out = io.StringIO()
    with Progress(3, "timing", bar=False, file=out, log_interval_s=0.05) as meter:
        wait_for_text(out, "timing: 0 of 3 steps done")  # nothing updated: the ticker still writes
        wait_for_text(out, "; step 1 running for 00:00")
        meter.update()
        meter.set_postfix_str("epoch 1 test error 9.00%")
        wait_for_text(out, "timing: 1 of 3 steps done")
        wait_for_text(out, "(epoch 1 test error 9.00%)")
    lines = out.getvalue().splitlines()
    assert lines and all(line.startswith(PREFIX) for line in lines), lines
    assert "\r" not in out.getvalue()  # one line per report: a log stays greppable


def test_a_terminal_gets_a_bar_and_a_meter_can_be_turned_off():
    out = io.StringIO()
    with Progress(4, "epoch 1", bar=True, file=out) as meter:
        meter.update(2)
        wait_for_text(out, "epoch 1:  50%")  # redrawn by the ticker, whatever tqdm's own pace
    assert "2/4" in out.getvalue() and PREFIX not in out.getvalue()
    assert progress_meter(False, 4, "epoch") is None


def tiny_timing_config() -> RunConfig:
    return RunConfig(dataset="cifar10", depth=10, k=1, data_source="synthetic:64:32")


def test_a_stopped_measurement_is_an_interruption_that_keeps_nothing():
    asked = []

    def should_stop() -> bool:
        asked.append(True)
        return len(asked) > 2

    with pytest.raises(MeasurementInterrupted) as stopped:
        measure_step_time(tiny_timing_config(), batch_size=2, warmup=1, repeats=3, device="cpu",
                          should_stop=should_stop, progress=False)
    assert isinstance(stopped.value, TrainingInterrupted)  # every executor counts it as interrupted
    assert str(stopped.value) == "stopped at step 2 of the measurement; nothing kept, it measures again on the next launch"
    result = measure_step_time(tiny_timing_config(), batch_size=2, warmup=1, repeats=3, device="cpu",
                               should_stop=lambda: False, progress=False)
    assert result.timing.repeats == 3
