"""Make the fabrication helper importable as `fabricate` from every analysis test."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
