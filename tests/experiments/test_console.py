"""The launcher's lines: runs named with their dataset and seed, counts that leave no run out, and a
summary that says something true when there was nothing to run."""

from __future__ import annotations

from pathlib import Path

from experiments import store
from experiments.console import OUTCOMES, run_name, summary, tally
from wrn.config import RunConfig


def counts(**given: int) -> dict[str, int]:
    return {outcome: given.get(outcome.replace(" ", "_"), 0) for outcome in OUTCOMES}


def test_a_run_is_named_with_its_network_dataset_and_seed():
    """Table 5 trains preact-ResNet-164 on CIFAR-10 and on CIFAR-100: their lines must differ."""
    names = {run_name(store.RunRecord(path=Path(rid), run_id=rid, state="todo", label="preact-ResNet-164",
                                      config=RunConfig(dataset=dataset, seed=0)))
             for rid, dataset in (("aaaaaaaaaaaa", "cifar10"), ("bbbbbbbbbbbb", "cifar100"))}
    assert names == {"preact-ResNet-164 cifar10 seed 0 [aaaaaaaaaaaa]",
                     "preact-ResNet-164 cifar100 seed 0 [bbbbbbbbbbbb]"}


def test_a_stopped_launch_is_summarised_with_every_run():
    assert summary(counts(done=2, interrupted=1, not_started=13), {"done": 0, "diverged": 0}) == \
        "summary: 2 done, 1 interrupted, 13 not started"
    assert summary(counts(done=1, failed=1), {"done": 3, "diverged": 1}) == \
        "summary: 1 done, 1 failed; 3 already done, 1 already diverged"


def test_a_launch_with_nothing_to_run_says_so():
    assert summary(counts(), {"done": 6, "diverged": 0}) == "summary: nothing to run, 6 already done"
    assert summary(counts(), {"done": 0, "diverged": 0}) == "summary: nothing to run"


def test_progress_counts_running_and_waiting_runs():
    assert tally(counts(done=1), running=2, to_do=3) == "1 done, 2 running, 3 to do"
    assert tally(counts()) == "nothing"
