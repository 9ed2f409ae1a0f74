"""Reliability tests only (put on PYTHONPATH by them): when WRN_TEST_TRAIN_LOG names a file, every
call of `wrn.train.train` in any process appends "<run folder name> <pid>" to it, so a test can count
how many times each run was really trained across concurrent launchers and their workers."""

import os
import sys

_LOG = os.environ.get("WRN_TEST_TRAIN_LOG")

if _LOG:
    import importlib.abc
    import importlib.util

    class _RecordTrainingStarts(importlib.abc.MetaPathFinder):
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
                real_train = module.train

                def train(cfg, run_dir, *args, **kwargs):
                    with open(_LOG, "a") as log:
                        log.write(f"{os.path.basename(os.fspath(run_dir))} {os.getpid()}\n")
                    return real_train(cfg, run_dir, *args, **kwargs)

                module.train = train

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, _RecordTrainingStarts())
