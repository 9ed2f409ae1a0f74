"""Fixtures of the benchmark tests: a tiny benchmark invocation and one measured result of it, shared
by the tests of train_speed."""

from __future__ import annotations

import json

import pytest

from benchmarks import train_measure, train_speed

TINY = ["--model", "WRN-10-1", "--train-images", "32", "--batch-size", "16", "--repeats", "1",
        "--data-repeats", "1", "--baseline-workers", "0"]


def _shrink(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sizes that make measurements meaningful cost seconds; the tests check plumbing, not speed."""
    monkeypatch.setattr(train_measure, "DATA_SAMPLE_IMAGES", 32)
    monkeypatch.setattr(train_measure, "PEAK_MATMUL_SIZE", {"cpu": 128, "cuda": 128})
    monkeypatch.setattr(train_speed, "BREAKDOWN_STEPS", 3)  # more than the 2 steps of an epoch here


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch, tmp_path) -> list[str]:
    """The arguments of a benchmark that runs in seconds, with its sample sizes shrunk to match, keeping
    its rates in a results folder of its own."""
    _shrink(monkeypatch)
    return [*TINY, "--results", str(tmp_path / "results")]


@pytest.fixture(scope="session")
def measured() -> dict:
    """One tiny run of both CPU modes against the baseline, with the breakdown, as `--json` prints it."""
    with pytest.MonkeyPatch.context() as mp:
        _shrink(mp)
        args = train_speed.parse_args([*TINY, "--precision", "fp32", "bf16", "--breakdown"])
        return json.loads(json.dumps(train_speed.run(args)))
