"""benchmarks/ddp_step.py: both sides measured in processes of their own, the data-parallel one over
gloo here, and the efficiency computed from them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # the data-parallel benchmark's processes

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("processes", [2, 1])  # two ranks; DistributedDataParallel in one process
def test_the_data_parallel_step_is_measured_against_one_process(processes):
    out = subprocess.run([sys.executable, "-m", "benchmarks.ddp_step", "--model", "WRN-10-1", "--device", "cpu",
                          "--processes", str(processes), "--batch-size", "4", "--steps", "1", "--json"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out.stdout)
    assert (r["processes"], r["backend"], r["batch_per_process"]) == (processes, "gloo", 4)
    assert r["single_step_ms"] > 0 and r["ddp_step_ms"] > 0
    assert r["ddp_img_s"] == pytest.approx(processes * 4 / (r["ddp_step_ms"] / 1000))
    assert r["efficiency"] == pytest.approx(r["ddp_img_s"] / (processes * r["single_img_s"]))


def test_a_bad_count_is_one_line():
    out = subprocess.run([sys.executable, "-m", "benchmarks.ddp_step", "--device", "cpu", "--processes", "0"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "--processes" in out.stderr
