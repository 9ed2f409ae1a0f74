"""Tests of sequential launches through real processes only (put on PYTHONPATH by them, with
tests/experiments): when WRN_TEST_FAKE_TRAINING is set, `wrn.train.train` is `fake_training.train` in
every process, SLURM jobs included, so which orderings a round decides is known in advance."""

import os
import sys

if os.environ.get("WRN_TEST_FAKE_TRAINING"):
    import importlib.abc
    import importlib.util

    class _FakeTraining(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name != "wrn.train":
                return None
            sys.meta_path.remove(self)
            try:
                spec = importlib.util.find_spec(name)
            finally:
                sys.meta_path.insert(0, self)
            real_exec = spec.loader.exec_module

            def exec_module(module):
                real_exec(module)
                import fake_training

                module.train = fake_training.train

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, _FakeTraining())
