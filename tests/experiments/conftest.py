"""Make the training stand-in (tests/hooks/fake_training.py) importable as `fake_training`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hooks"))
