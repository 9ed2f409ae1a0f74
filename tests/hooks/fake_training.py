"""Training stand-in for the tests of sequential launches: a run "trains" in a millisecond and ends with
a final test error drawn from a known distribution per network, so which orderings a round decides is
known. It goes through everything but the network: the worker, the run store, the result file."""

from __future__ import annotations

import numpy as np

from wrn.records import EpochMetrics, RunResult, RuntimeSettings

SIGMA = 0.15
MEANS = {1: 5.0, 2: 7.0, 3: 5.3}  # test error (%) of WRN-10-k: k = 2 is far above k = 1, k = 3 a little

RUNTIME = RuntimeSettings(device="cpu", device_name="cpu", precision="fp32", channels_last=True, tf32=False,
                          compile=False, torch="2", threads=1)


def final_error(k: int, seed: int) -> float:
    return MEANS[k] + SIGMA * float(np.random.default_rng([k, seed]).standard_normal())


def train(cfg, run_dir, data_dir, device=None, should_stop=None, progress=None, download=True) -> RunResult:
    error = final_error(cfg.k, cfg.seed)
    final = EpochMetrics(epoch=cfg.epochs, lr=cfg.lr, train_loss=0.1, train_error=1.0, test_loss=0.2,
                         test_error=error, test_top5_error=0.0)
    return RunResult(kind="train", status="done", final=final, diverged=None, params=1, flops=1, epoch_time_s=0.0,
                     train_time_s=0.0, images_per_s=None, timing=None, runtime=RUNTIME)
