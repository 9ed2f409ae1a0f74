"""Data-parallel training on CPU (gloo): two processes against one, exact resume, rank 0 alone writing,
a process that dies, and batch norm over the whole batch (wrn/distributed.py, wrn/sync_batchnorm.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from experiments.executors import rank_environments
from wrn import checkpoint
from wrn.config import RunConfig
from wrn.data.fake import write_fake_dataset
from wrn.train import train

pytestmark = pytest.mark.slow  # runs of several gloo processes

ROOT = Path(__file__).resolve().parents[2]
PROCESS = Path(__file__).with_name("ddp_process.py")
TIME_FIELDS = ("train_time_s", "images_per_s")
# Two processes with batch norm over the whole batch compute what one process does, up to the order of
# floating-point sums (the all-reduce adds the shares' gradients; the statistics come from sums of
# squares), amplified by 12 steps at lr 0.1: measured here, weights differ by at most 9.3e-5 and the
# losses by 3.5e-5; the bounds leave 10x room. Without it they differ by 0.3 (per-process batch norm).
WEIGHT_TOLERANCE = 1e-3
LOSS_TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_fake_dataset("cifar10", root, n_train=96, n_test=48, seed=0)
    return root


def tiny(**overrides) -> RunConfig:
    base = dict(dataset="cifar10", data_source="synthetic:96:48", depth=10, k=1, preprocessing="meanstd",
                epochs=2, batch_size=16, eval_batch_size=24, lr_milestones=(2,), seed=0)
    base.update(overrides)
    return RunConfig(**base)


def run_processes(cfg: RunConfig, run_dir: Path, data_dir: Path, stop_rank: int = -1, stop_after: int = -1,
                  kill_rank: int = -1, timeout_s: float = 120, env_extra: dict | None = None) -> list[subprocess.CompletedProcess]:
    """Run `cfg` as `cfg.world_size` processes here; `stop_rank` asks one rank to stop after
    `stop_after` steps; `kill_rank` SIGKILLs one rank once the run has written a checkpoint."""
    envs = rank_environments(cfg.world_size)
    procs = []
    for rank, rank_env in enumerate(envs):
        env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", **rank_env, **(env_extra or {}))
        after = stop_after if rank == stop_rank else -1
        procs.append(subprocess.Popen([sys.executable, str(PROCESS), json.dumps(cfg.to_dict()), str(run_dir),
                                       str(data_dir), str(after)], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    if kill_rank >= 0:
        deadline = time.monotonic() + timeout_s
        while not (run_dir / "checkpoint.pt").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        procs[kill_rank].kill()
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=timeout_s)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


def result_of(done: subprocess.CompletedProcess) -> dict:
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def metrics(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIME_FIELDS} for r in rows]


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return checkpoint.load_latest(run_dir)["model"]


def test_two_processes_with_sync_bn_match_one_process_of_the_same_batch(tmp_path, data_dir):
    one = train(tiny(), tmp_path / "one", data_dir, device="cpu", progress=False)
    two = run_processes(tiny(world_size=2, sync_bn=True), tmp_path / "two", data_dir)
    results = [result_of(p) for p in two]
    assert [r["runtime"]["world_size"] for r in results] == [2, 2]
    assert results[0]["runtime"]["per_rank_batch"] == 8 and results[0]["runtime"]["backend"] == "gloo"
    assert results[0]["final"] == results[1]["final"]  # every rank returns the run's numbers
    w1, w2 = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert w1.keys() == w2.keys()
    worst = max(float((w1[k].double() - w2[k].double()).abs().max()) for k in w1 if w1[k].is_floating_point())
    assert 0 < worst < WEIGHT_TOLERANCE  # the same training, summed in another order
    for a, b in zip(metrics(tmp_path / "one"), metrics(tmp_path / "two")):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=LOSS_TOLERANCE)
        assert a["test_loss"] == pytest.approx(b["test_loss"], abs=LOSS_TOLERANCE)
        assert a["train_error"] == b["train_error"] and a["test_error"] == b["test_error"]
    assert one.final.test_error == results[0]["final"]["test_error"]


def test_without_sync_bn_each_process_normalises_its_own_share(tmp_path, data_dir):
    """Per-process batch norm (fb.resnet.torch's 8 x 32 on ImageNet) trains another network: part of
    the run's identity, not a detail of how it was launched."""
    train(tiny(), tmp_path / "one", data_dir, device="cpu", progress=False)
    result_of(run_processes(tiny(world_size=2), tmp_path / "two", data_dir)[0])
    w1, w2 = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert max(float((w1[k] - w2[k]).abs().max()) for k in w1 if w1[k].is_floating_point()) > 1e-2


RESUMED = tiny(world_size=2, dropout=0.3, epochs=3, lr_milestones=(3,))  # dropout: every rank's RNG is resumed


@pytest.fixture(scope="module")
def straight(tmp_path_factory, data_dir) -> Path:
    """An uninterrupted two-process run of `RESUMED`."""
    run_dir = tmp_path_factory.mktemp("straight")
    for p in run_processes(RESUMED, run_dir, data_dir):
        result_of(p)
    return run_dir


@pytest.mark.parametrize("stop_rank,stop_after", [(1, 3), (0, 6), (1, 7)])  # mid-epoch on either rank, epoch end
def test_a_stop_on_any_rank_stops_all_at_one_step_and_the_resume_is_bit_identical(tmp_path, data_dir, straight,
                                                                                   stop_rank, stop_after):
    cfg = RESUMED
    stopped = run_processes(cfg, tmp_path / "resumed", data_dir, stop_rank=stop_rank, stop_after=stop_after)
    assert [p.returncode for p in stopped] == [3, 3], [p.stderr[-2000:] for p in stopped]
    where = {tuple(json.loads(p.stdout.strip().splitlines()[-1])["interrupted"]) for p in stopped}
    assert len(where) == 1  # both ranks stopped at the same step boundary
    results = [result_of(p) for p in run_processes(cfg, tmp_path / "resumed", data_dir)]
    assert metrics(tmp_path / "resumed") == metrics(straight)
    ws, wr = weights(straight), weights(tmp_path / "resumed")
    assert all(torch.equal(ws[k], wr[k]) for k in ws)
    assert results[0]["final"]["test_error"] == metrics(straight)[-1]["test_error"]


def test_only_rank_0_writes_the_run_folder(tmp_path, data_dir):
    run_dir = tmp_path / "run"
    procs = run_processes(tiny(world_size=2, epochs=1, lr_milestones=(2,)), run_dir, data_dir)
    [result_of(p) for p in procs]
    assert sorted(p.name for p in run_dir.iterdir() if p.name != "tensorboard") == ["checkpoint.pt", "metrics.jsonl"]


def test_a_process_that_dies_fails_the_others_after_the_collective_timeout(tmp_path, data_dir):
    cfg = tiny(world_size=2, epochs=40, lr_milestones=(41,))
    started = time.monotonic()
    procs = run_processes(cfg, tmp_path / "run", data_dir, kill_rank=1, env_extra={"WRN_COLLECTIVE_TIMEOUT_S": "5"})
    assert procs[1].returncode == -9
    assert procs[0].returncode not in (0, 3)
    assert time.monotonic() - started < 90  # no hang: the survivor gave up after its timeout
    assert checkpoint.load_latest(tmp_path / "run") is not None  # what it had finished is kept


def test_a_process_started_for_another_world_size_is_refused(tmp_path, data_dir):
    from wrn.distributed import DistributedSetupError

    with pytest.raises(DistributedSetupError, match="world_size=2"):
        train(tiny(world_size=2), tmp_path / "run", data_dir, device="cpu")
