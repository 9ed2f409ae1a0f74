"""The training engine: one resolved `RunConfig` in, one trained network and its metrics out.

`train` follows the official Lua recipe (paper §3; docs/paper.md, "Recipe"): SGD with Nesterov
momentum, weight decay on every parameter, a step schedule whose drops take effect at the 1-indexed
milestone epochs, the momentum buffers reset at every drop, the last partial training batch dropped,
and the test set evaluated after every epoch. The run's reported number is the final epoch's test
error.

It is resumable at any step boundary, exactly: the data pipeline is stateless (its shuffle and
augmentation are seeded by (seed, epoch, step)), and a checkpoint holds the model, the optimizer, the
position in the schedule, the epoch's partial accumulators and every RNG state, plus the metrics
history, so metrics.jsonl can always be rebuilt to agree with the checkpoint it belongs to.

On CUDA it keeps the device busy: data and augmentation live on the GPU, losses and correct counts
accumulate on the device and are read once per epoch, and there is no per-step host synchronisation.
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from wrn import checkpoint, distributed
from wrn.config import RunConfig, resolve
from wrn.data.origin import check_data_source
from wrn.data.pipeline import DataPipeline, derived_seed
from wrn.data.tensor_pipeline import make_pipeline
from wrn.distributed import SINGLE, Processes
from wrn.files import atomic_write_text
from wrn.models import build_model, count_params, forward_flops
from wrn.progress import progress_meter
from wrn.records import FINAL_METRICS, METRICS_FILE, Divergence, EpochMetrics, RunResult, RuntimeSettings
from wrn.runtime import autocast, bind_device, runtime_settings, set_cuda_switches, synchronize
from wrn.sync_batchnorm import synchronise_batch_norm
from wrn.tensorboard import write_curves

class TrainingInterrupted(Exception):
    """Training stopped on request at a step boundary, after writing a checkpoint there."""

    def __init__(self, epoch: int, step: int):
        self.epoch, self.step = epoch, step
        super().__init__(f"stopped at epoch {epoch}, step {step}; checkpoint written")


# ------------------------------------------------------------------------------------------------
# The step: shared by the engine, the Figure 4 timing and the benchmarks


def make_optimizer(model: torch.nn.Module, cfg: RunConfig, device: torch.device) -> torch.optim.SGD:
    """SGD exactly as optim.sgd in the Lua code: weight decay on all parameters (BN and fc bias
    included), dampening 0, Nesterov. Fused on CUDA (one kernel for the whole update)."""
    kwargs: dict[str, Any] = {"fused": True} if device.type == "cuda" else {"foreach": True}
    return torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=cfg.momentum, dampening=cfg.dampening,
        weight_decay=cfg.weight_decay, nesterov=cfg.nesterov, **kwargs,
    )


def build_trainable(cfg: RunConfig, device: torch.device, settings: RuntimeSettings,
                    processes: Processes = SINGLE):
    """The network on `device` in its memory format, its optimizer, and the module the training step
    calls (DistributedDataParallel across `processes` when there are several, compiled when
    `cfg.compile`): what the engine, the Figure 4 timing and the benchmarks train, built one way, with
    the CUDA backend switches (TF32 as `cfg.tf32`, cuDNN autotuning) set."""
    if device.type == "cuda":  # process-wide switches, set by whoever builds something to train
        set_cuda_switches(cfg.tf32)
    model = build_model(cfg)
    if cfg.sync_bn:
        model = synchronise_batch_norm(model, device)
    model = model.to(device)
    if settings.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, cfg, device)
    step_model = model
    if processes.distributed:
        step_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        step_model = torch.compile(step_model)
    return model, step_model, optimizer


def training_step(step_model, optimizer, x: torch.Tensor, y: torch.Tensor, settings: RuntimeSettings,
                  device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward, backward and SGD update; returns (loss, logits), both left on the device so that
    the caller decides when (if ever) to synchronise with the host."""
    if settings.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with autocast(settings, device):
        out = step_model(x)
        loss = F.cross_entropy(out.float(), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach(), out


def set_epoch_learning_rate(optimizer: torch.optim.Optimizer, cfg: RunConfig, epoch: int, starting: bool) -> float:
    """Give `optimizer` the learning rate of 1-indexed `epoch` (`RunConfig.lr_at`) and return it. At
    the `starting` of an epoch whose rate dropped, clear the momentum buffers when
    `cfg.reset_momentum_on_decay`, as the Lua code does by rebuilding optim's state at every drop (a
    resume within the epoch keeps the buffers of its checkpoint)."""
    lr = cfg.lr_at(epoch)
    if starting and cfg.reset_momentum_on_decay and epoch > 1 and lr != cfg.lr_at(epoch - 1):
        optimizer.state.clear()
    _set_learning_rate(optimizer, lr)
    return lr


def _set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def process_seed(seed: int, processes: Processes) -> int:
    """The seed of a process's global RNGs (dropout's masks): the run's for rank 0, so one process
    draws as it always has, and unrelated streams for the other ranks."""
    return seed if processes.is_writer else derived_seed("process", seed, processes.rank)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state(device: torch.device) -> dict[str, Any]:
    """Every generator a run draws from: Python's, NumPy's, torch's CPU one, and on CUDA the generator
    of the run's own device (dropout's masks), stored with the device it came from. Only that one: the
    other GPUs of the node are other processes' and a resume may see fewer of them."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
        state["cuda_device"] = str(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Restore `rng_state`'s generators, the CUDA one onto this run's device whichever GPU it was
    saved from (the state is the generator's seed and offset, not tied to a GPU). A state saved on the
    CPU leaves the CUDA generator as seeded."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def evaluate(model, pipeline: DataPipeline, settings: RuntimeSettings, device: torch.device,
             processes: Processes = SINGLE) -> dict[str, float]:
    """Test loss, top-1 and top-5 error (percent) over the whole test set, each process evaluating its
    share of it (`DataPipeline.test_share`) and the sums added up over processes; one host sync at
    the end."""
    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    top1 = torch.zeros((), device=device, dtype=torch.int64)
    top5 = torch.zeros((), device=device, dtype=torch.int64)
    n = 0
    with torch.no_grad(), autocast(settings, device):
        for x, y in pipeline.test_batches():
            if settings.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            out = model(x).float()
            loss_sum += F.cross_entropy(out, y, reduction="sum").double()
            top1 += (out.argmax(1) == y).sum()
            k = min(5, out.shape[1])
            top5 += (out.topk(k, dim=1).indices == y[:, None]).any(1).sum()
            n += y.numel()
    if processes.distributed:
        total = distributed.sum_over_ranks(torch.stack([loss_sum.cpu(), top1.cpu().double(), top5.cpu().double(),
                                                         torch.tensor(n, dtype=torch.float64)]))
        loss_sum, top1, top5, n = total[0], total[1], total[2], int(total[3])
    return {
        "test_loss": float(loss_sum) / n,
        "test_error": 100.0 * (1 - float(top1) / n),
        "test_top5_error": 100.0 * (1 - float(top5) / n),
    }


# ------------------------------------------------------------------------------------------------
# The engine


@dataclass
class Position:
    """Where training stands: about to run `step` of `epoch` (step 0: the epoch's start), with the
    accumulators of a partly run epoch, every finished epoch's metrics, and the divergence if any."""

    epoch: int = 1
    step: int = 0
    partial: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    diverged: dict[str, Any] | None = None


@dataclass
class Trainer:
    """Everything one epoch needs; built once per `train` call, by `prepare_training`.

    Under data parallelism every process runs this same loop on its share of each batch; they meet at
    every step (gradients, the stop decision) and at every epoch's end (sums, evaluation, the
    checkpoint). Rank 0 alone writes the run's files; every rank reads them back on a resume."""

    cfg: RunConfig
    run_dir: Path
    device: torch.device
    settings: RuntimeSettings
    pipeline: DataPipeline
    model: torch.nn.Module
    step_model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    should_stop: Callable[[], bool] | None
    bar: Any
    processes: Processes = SINGLE

    def save(self, position: Position) -> None:
        """Checkpoint `position`, with every process's RNG states, so that a resume continues exactly
        there. Collective under data parallelism: every rank calls it, rank 0 writes."""
        rng = rng_state(self.device)
        by_rank = distributed.gather_to_writer(rng, self.processes) if self.processes.distributed else None
        if not self.processes.is_writer:
            return
        checkpoint.save({
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "history": position.history,
            "epoch": position.epoch,
            "step": position.step,
            "partial": position.partial,
            "diverged": position.diverged,
            "rng": rng,
            **({"rng_by_rank": by_rank} if by_rank is not None else {}),
        }, self.run_dir)

    def restore(self) -> Position:
        """The position of the run's last good checkpoint (the start when there is none), with the
        model, the optimizer and the RNGs set to it and metrics.jsonl rewritten to agree with it.
        Every rank reads the checkpoint; a partly run epoch's sums go to rank 0 alone, since the
        epoch's end adds up every rank's."""
        state = checkpoint.load_latest(self.run_dir)
        position = Position()
        if state is not None:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            set_rng_state(state["rng_by_rank"][self.processes.rank] if "rng_by_rank" in state else state["rng"],
                          self.device)
            partial = state.get("partial") if self.processes.is_writer else _zero_partial(state.get("partial"))
            position = Position(epoch=state["epoch"], step=state["step"], partial=partial,
                                history=state["history"], diverged=state.get("diverged"))
        if self.processes.distributed:
            self.check_same_position(position)
        if self.processes.is_writer:
            if state is not None:
                print(f"resuming {self.run_dir.name} at epoch {position.epoch}, step {position.step}",
                      file=sys.stderr, flush=True)
            atomic_write_text(self.run_dir / METRICS_FILE,
                              "".join(json.dumps(row) + "\n" for row in position.history))
        return position

    def check_same_position(self, position: Position) -> None:
        """Fail on every rank unless all of them read the same checkpoint position."""
        mine = torch.tensor([position.epoch, position.step], dtype=torch.int64)
        total = distributed.sum_over_ranks(mine)
        if not torch.equal(total, mine * self.processes.world_size):
            raise RuntimeError(f"{self.run_dir.name}: the processes of this run read different checkpoints "
                               f"(rank {self.processes.rank} at epoch {position.epoch}, step {position.step})")

    def run_epoch(self, position: Position) -> None:
        """Train the rest of `position`'s epoch, evaluate, record the metrics and checkpoint the start
        of the next epoch; or record the divergence. Raises `TrainingInterrupted` (after a
        checkpoint of that exact step) when `should_stop` says so at a step boundary."""
        lr = set_epoch_learning_rate(self.optimizer, self.cfg, position.epoch, starting=position.step == 0)
        losses, correct, train_time = self.train_steps(position)
        finite = torch.isfinite(losses)
        if not bool(finite.all()):
            bad = int((~finite).nonzero()[0, 0])
            position.step, position.partial = 0, None
            position.diverged = {"epoch": position.epoch, "step": bad, "loss": str(float(losses[bad]))}
            self.save(position)
            return
        seen = self.pipeline.steps_per_epoch * self.cfg.batch_size
        if self.processes.distributed:
            distributed.broadcast_buffers(self.model)  # evaluate, and save, rank 0's running statistics
        row = {
            "epoch": position.epoch,
            "lr": lr,
            "train_loss": float(losses.double().mean()),
            "train_error": 100.0 * (1 - correct / seen),
            **evaluate(self.step_model if not self.processes.distributed else self.model, self.pipeline,
                       self.settings, self.device, self.processes),
            "train_time_s": train_time,
            "images_per_s": seen / train_time if train_time > 0 else float("nan"),
        }
        position.history.append(row)
        position.epoch, position.step, position.partial = position.epoch + 1, 0, None
        self.save(position)
        if not self.processes.is_writer:
            return
        with open(self.run_dir / METRICS_FILE, "a") as f:
            f.write(json.dumps(row) + "\n")
        write_curves(self.run_dir, self.cfg, position.history)  # TensorBoard's view of metrics.jsonl
        if self.bar is not None:
            self.bar.set_postfix_str(f"epoch {row['epoch']} test error {row['test_error']:.2f}%")
            self.bar.reset()

    def stop_requested(self) -> bool:
        """Whether to stop at this step boundary: this process was asked to, or (under data
        parallelism, where the ranks agree at every step) any process was."""
        asked = self.should_stop is not None and self.should_stop()
        return distributed.any_rank(asked) if self.processes.distributed else asked

    def train_steps(self, position: Position) -> tuple[torch.Tensor, int, float]:
        """The remaining steps of `position`'s epoch: every step's loss (on the CPU; the mean over the
        processes' shares), the correct training predictions and the seconds spent, a partly run epoch's
        accumulators included. The losses and counts stay on the device until the epoch ends: no
        per-step synchronisation with the device."""
        self.model.train()
        losses, correct, elapsed = self.accumulators(position)
        if self.bar is not None:  # this epoch's meter, from the step it resumes at
            self.bar.reset()
            self.bar.set_description_str(f"epoch {position.epoch}", refresh=False)
            self.bar.update(position.step)
        synchronize(self.device)
        started = time.perf_counter()
        self.step_through(position, losses, correct, lambda: elapsed + time.perf_counter() - started)
        synchronize(self.device)
        train_time = elapsed + time.perf_counter() - started
        step_losses, step_correct = self.summed(losses, correct)
        return step_losses / self.processes.world_size, step_correct, train_time

    def accumulators(self, position: Position) -> tuple[torch.Tensor, torch.Tensor, float]:
        """An epoch's per-step losses and correct count on the device, and its seconds so far: zero, or
        those of the partly run epoch `position` resumes."""
        losses = torch.zeros(self.pipeline.steps_per_epoch, device=self.device, dtype=torch.float32)
        correct = torch.zeros((), device=self.device, dtype=torch.int64)
        if position.partial is None:
            return losses, correct, 0.0
        losses.copy_(position.partial["losses"].to(self.device))
        correct.fill_(int(position.partial["correct"]))
        return losses, correct, position.partial["elapsed"]

    def step_through(self, position: Position, losses: torch.Tensor, correct: torch.Tensor,
                     elapsed: Callable[[], float]) -> None:
        """Steps `position.step`.. of the epoch, each step's loss written into `losses` and its correct
        predictions added to `correct`, on the device. Nothing here waits for the device (`python -m
        benchmarks.gpu_check` runs an epoch of it under torch.cuda.set_sync_debug_mode("error")), but a
        stop: asked for at a step boundary, it checkpoints there, with `elapsed()` seconds spent, and
        raises `TrainingInterrupted`."""
        steps = self.pipeline.steps_per_epoch
        warming = self.cfg.warming_in(position.epoch, steps)
        step = position.step
        for x, y in self.pipeline.train_batches(position.epoch, position.step):
            if self.stop_requested():
                synchronize(self.device)
                position.step = step
                step_losses, step_correct = self.summed(losses, correct)
                position.partial = {"losses": step_losses, "correct": step_correct, "elapsed": elapsed()}
                self.save(position)
                raise TrainingInterrupted(position.epoch, step)
            if warming:
                _set_learning_rate(self.optimizer, self.cfg.lr_at_step(position.epoch, step, steps))
            loss, out = training_step(self.step_model, self.optimizer, x, y, self.settings, self.device)
            losses[step] = loss
            correct += (out.argmax(1) == y).sum()
            step += 1
            if self.bar is not None:
                self.bar.update(1)

    def summed(self, losses: torch.Tensor, correct: torch.Tensor) -> tuple[torch.Tensor, int]:
        """The per-step losses (on the CPU) and the correct count, added up over the processes."""
        losses, correct = losses.cpu(), correct.cpu()
        if self.processes.distributed:
            losses, correct = distributed.sum_over_ranks(losses), distributed.sum_over_ranks(correct)
        return losses, int(correct)

    def result(self, position: Position, params: int) -> RunResult:
        history, diverged = position.history, position.diverged
        times = [r["train_time_s"] for r in history]
        images = len(times) * self.pipeline.steps_per_epoch * self.cfg.batch_size
        final = None
        if diverged is None and history:
            final = EpochMetrics(**{k: history[-1][k] for k in FINAL_METRICS})
        return RunResult(
            kind="train",
            status="diverged" if diverged is not None else "done",
            final=final,
            diverged=None if diverged is None else Divergence(**diverged),
            params=params,
            flops=forward_flops(self.cfg),
            epoch_time_s=statistics.median(times) if times else None,
            train_time_s=sum(times),
            images_per_s=images / sum(times) if times else None,
            timing=None,
            runtime=self.settings,
        )


def _pipeline_of_every_rank(cfg: RunConfig, data_dir: Path | None, device: torch.device, download: bool,
                            processes: Processes) -> DataPipeline:
    """This process's data pipeline. Rank 0 builds its own first, downloading missing data and caching
    the ZCA fit, and the other ranks then build theirs from what it left on disk."""
    if not processes.distributed:
        return make_pipeline(cfg, data_dir, device, download=download)
    pipeline = make_pipeline(cfg, data_dir, device, download=download, rank=0) if processes.is_writer else None
    distributed.any_rank(False)  # rank 0's data are ready
    return pipeline or make_pipeline(cfg, data_dir, device, download=False, rank=processes.rank)


def _zero_partial(partial: dict[str, Any] | None) -> dict[str, Any] | None:
    """A partly run epoch's record with its sums at zero: what a rank other than 0 resumes with."""
    if partial is None:
        return None
    return {"losses": torch.zeros_like(partial["losses"]), "correct": 0, "elapsed": partial["elapsed"]}


def train(
    cfg: RunConfig,
    run_dir: Path,
    data_dir: Path | None,
    device: str | torch.device | None = None,
    should_stop: Callable[[], bool] | None = None,
    progress: bool | None = None,
    download: bool = True,
) -> RunResult:
    """Train `cfg` in `run_dir`, resuming from its last good checkpoint; return the result.

    `should_stop` is polled at every step boundary; when it returns True a checkpoint of that exact
    step is written and `TrainingInterrupted` is raised. A non-finite training loss ends the run with
    status "diverged" and the (epoch, step) where it first appeared. `progress` shows the epoch's steps
    (`wrn.progress`): False hides them; the default is a bar on a terminal, else a line every few seconds.

    A run of `cfg.world_size` > 1 is this call in each of its processes, started with torch's env://
    variables (`wrn.distributed`); every rank returns the result, rank 0 alone writes the run's files."""
    trainer = prepare_training(cfg, run_dir, data_dir, device, should_stop, progress, download)
    try:
        position = trainer.restore()
        while position.diverged is None and position.epoch <= trainer.cfg.epochs:
            trainer.run_epoch(position)
    finally:
        if trainer.bar is not None:
            trainer.bar.close()
    return trainer.result(position, count_params(trainer.model))


def prepare_training(cfg: RunConfig, run_dir: Path, data_dir: Path | None, device: str | torch.device | None = None,
                     should_stop: Callable[[], bool] | None = None, progress: bool | None = None,
                     download: bool = True) -> Trainer:
    """Everything `train` needs before its first epoch, with this process bound to its device and
    joined to the run's other processes: what `train` runs, and what the GPU check drives step by step."""
    cfg = resolve(cfg)
    run_dir = Path(run_dir)
    device = bind_device(device)
    processes = distributed.join(cfg.world_size, device)
    if processes.is_writer:
        run_dir.mkdir(parents=True, exist_ok=True)
    settings = runtime_settings(cfg, device, processes)
    seed_everything(process_seed(cfg.seed, processes))
    pipeline = _pipeline_of_every_rank(cfg, data_dir, device, download, processes)
    check_data_source(cfg, pipeline.train_size, pipeline.test_size, data_dir)
    model, step_model, optimizer = build_trainable(cfg, device, settings, processes)
    bar = progress_meter(progress if processes.is_writer else False, pipeline.steps_per_epoch, "epoch")
    return Trainer(cfg, run_dir, device, settings, pipeline, model, step_model, optimizer, should_stop, bar, processes)
