"""gpu_check.sh's summary reads what train_speed --json writes (the whole script runs on a GPU
machine, or for about 100 s on CPU: too slow for every test run, so its summary is checked here on a
real benchmark result and the script's steps are plain train_speed invocations tested elsewhere)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from benchmarks import train_speed

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.sh"


def summary_program() -> str:
    match = re.search(r"<<'EOF'\n(.*?)\nEOF\n", SCRIPT.read_text(), re.S)
    assert match, "gpu_check.sh has one quoted heredoc: its summary"
    return match.group(1)


def test_every_step_is_a_train_speed_invocation_with_valid_flags():
    steps = [line.split(None, 2)[2] for line in SCRIPT.read_text().splitlines() if line.startswith("step ")]
    assert len(steps) == 6
    for args in steps:
        argv = [a for a in args.replace('"${BIG[@]}"', "").replace('"${SMALL[@]}"', "").split()
                if not a.startswith("$")]
        train_speed.parse_args(argv)  # raises UsageError on a flag train_speed does not take


def test_summary_of_real_results(tmp_path, measured):
    full = {**measured, "concurrent": {"processes": 4, "total_img_s": 4000.0, "ratio": 3.5}}
    plain = {**measured, "ratio": None, "breakdown": None}
    (tmp_path / "a_full.json").write_text(json.dumps(full))
    (tmp_path / "b_plain.json").write_text(json.dumps(plain))
    out = subprocess.run([sys.executable, "-c", summary_program(), str(tmp_path), "12"], capture_output=True,
                         text=True, check=True).stdout
    lines = out.splitlines()
    assert "12 s in all" in lines[1]
    row = next(x for x in lines if x.startswith("a_full"))
    assert f"{measured['suite_img_s']:,.0f}" in row and "x baseline" in row
    assert "convolutions" in row and "4 processes: 4,000 img/s total (3.50x one)" in row
    assert next(x for x in lines if x.startswith("b_plain")).rstrip().endswith("%")  # no notes


def test_the_fused_sgd_check_selects_the_equivalence_test():
    """gpu_check.sh runs `-k fused` of tests/wrn/test_equivalence.py on the GPU: the selection must
    name a test (an empty selection would pass silently)."""
    line = next(x for x in SCRIPT.read_text().splitlines() if "test_equivalence.py -k fused" in x)
    assert line.startswith("timeout ")
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                          "tests/wrn/test_equivalence.py", "-k", "fused"], cwd=SCRIPT.parents[1],
                         capture_output=True, text=True, check=True).stdout
    assert re.search(r"test_fused_sgd_equals_foreach_sgd\S*\[cpu\]", out)
