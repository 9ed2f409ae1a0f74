"""Make the stand-ins of tests/hooks (the training stand-in `fake_training`, the CUDA stand-in
`cuda_standin`, the stub worker) importable from every test."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "hooks"))
