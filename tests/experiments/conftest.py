"""Make the training stand-in importable as `fake_training` from the experiments tests."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
