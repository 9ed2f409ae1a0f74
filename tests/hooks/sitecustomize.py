"""Test hooks for real processes (launchers, workers, SLURM jobs), active only when a test puts this
folder on PYTHONPATH and sets their variable:

- WRN_TEST_TRAIN_LOG=<file>: every call of `wrn.train.train` in any process appends "<run folder
  name> <pid>" to the file, so a test can count how many times each run was really trained across
  concurrent launchers and their workers;
- WRN_TEST_FAKE_TRAINING=1: `wrn.train.train` is `fake_training.train` (this folder), so which
  orderings a sequential launch's rounds decide is known in advance;
- WRN_TEST_FAKE_CUDA=<n>: the process sees a node of n stand-in GPUs (`cuda_standin.py`, this folder)
  through its CUDA_VISIBLE_DEVICES, and records what it asks of each in WRN_TEST_CUDA_LOG.
"""

import importlib.abc
import importlib.util
import os
import sys

_LOG = os.environ.get("WRN_TEST_TRAIN_LOG")
_FAKE = os.environ.get("WRN_TEST_FAKE_TRAINING")


def _patched_train(real_train):
    if _FAKE:
        import fake_training

        real_train = fake_training.train
    if not _LOG:
        return real_train

    def train(cfg, run_dir, *args, **kwargs):
        with open(_LOG, "a") as log:
            log.write(f"{os.path.basename(os.fspath(run_dir))} {os.getpid()}\n")
        return real_train(cfg, run_dir, *args, **kwargs)

    return train


class _PatchTraining(importlib.abc.MetaPathFinder):
    """Replaces `wrn.train.train` right after the module is executed, before anyone imports it."""

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
            module.train = _patched_train(module.train)

        spec.loader.exec_module = exec_module
        return spec


if _LOG or _FAKE:
    sys.meta_path.insert(0, _PatchTraining())

if os.environ.get("WRN_TEST_FAKE_CUDA"):
    import cuda_standin

    cuda_standin.CudaStandIn(int(os.environ["WRN_TEST_FAKE_CUDA"]), os.environ.get("WRN_TEST_CUDA_LOG")).install()
