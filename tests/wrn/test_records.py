"""Run records (wrn.records): a result serialises to result.json's JSON and back, and a result that
lacks what its kind and status promise is refused whole."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from wrn.records import Divergence, EpochMetrics, RunResult, RuntimeSettings, StepTiming, timestamp

RUNTIME = RuntimeSettings(device="cpu", device_name="cpu", precision="fp32", channels_last=True, tf32=False,
                          compile=False, torch="2.4", threads=2)
FINAL = EpochMetrics(epoch=200, lr=0.0008, train_loss=0.01, train_error=0.1, test_loss=0.2, test_error=4.0,
                     test_top5_error=0.1)
DONE = RunResult(kind="train", status="done", final=FINAL, diverged=None, params=36_479_194, flops=10_487_000_000,
                 epoch_time_s=60.0, train_time_s=12_000.0, images_per_s=833.0, timing=None, runtime=RUNTIME)
DIVERGED = dataclasses.replace(DONE, status="diverged", final=None, diverged=Divergence(epoch=2, step=17, loss="nan"))
TIMED = dataclasses.replace(DONE, kind="timing", final=None, epoch_time_s=None, train_time_s=None,
                            timing=StepTiming(batch_size=32, ms_median=68.0, ms_min=66.0, ms_max=70.0, repeats=50))


@pytest.mark.parametrize("result", [DONE, DIVERGED, TIMED], ids=["done", "diverged", "timing"])
def test_a_result_round_trips_through_json(result):
    data = json.loads(json.dumps(result.to_dict()))
    assert RunResult.from_dict({**data, "run_id": "abc", "finished_at": timestamp()}) == result


@pytest.mark.parametrize("change, reason", [
    (lambda d: d.update(final=None), "no finite final.test_error"),
    (lambda d: d["final"].update(test_error=math.nan), "no finite final.test_error"),
    (lambda d: d.update(status="diverged"), "without its divergence"),
    (lambda d: d.update(status="running"), "unknown status"),
    (lambda d: d.update(kind="timing"), "no timing.ms_median"),
    (lambda d: d.pop("runtime"), "not a run result"),
    (lambda d: d["final"].pop("test_loss"), "not a run result"),
    (lambda d: d["runtime"].pop("precision"), "not a run result"),
])
def test_a_result_missing_what_it_promises_is_refused(change, reason):
    data = DONE.to_dict()
    data["final"] = dict(data["final"])
    data["runtime"] = dict(data["runtime"])
    change(data)
    with pytest.raises(ValueError, match=reason):
        RunResult.from_dict(data)


def test_timestamps_are_utc_to_the_second():
    assert len(timestamp()) == len("2016-05-23T12:00:00Z") and timestamp().endswith("Z")
