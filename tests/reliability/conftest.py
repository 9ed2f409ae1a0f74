"""Fixtures of the reliability tests, registered here by name; the helpers the tests share live in
harness.py (a plain module, so that no test imports a `conftest` that another folder also has)."""

from harness import data_dir, reference, workers  # noqa: F401
