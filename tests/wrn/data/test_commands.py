"""The data commands keep the names the README, the docs and the error messages give them: ``python -m
wrn.download``, ``python -m wrn.manifest`` and ``python -m wrn.fake_data`` run the commands of
wrn.data (download, prepared, fake)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow
@pytest.mark.parametrize("command", ["wrn.download", "wrn.manifest", "wrn.fake_data"])
def test_the_documented_commands_run(command):
    done = subprocess.run([sys.executable, "-m", command, "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: python -m {command} ")
