"""The training engine: one resolved `RunConfig` in, one trained network and its metrics out.

`train` follows the official Lua recipe (wrn-paper.md §3, §5.1): SGD with Nesterov momentum, weight
decay on every parameter, a step schedule whose drops take effect at the 1-indexed milestone epochs,
the momentum buffers reset at every drop, the last partial training batch dropped, and the test set
evaluated after every epoch. The run's reported number is the final epoch's test error.

It is resumable at any step boundary, exactly: the data pipeline is stateless (its shuffle and
augmentation are seeded by (seed, epoch, step)), and a checkpoint holds the model, the optimizer, the
position in the schedule, the epoch's partial accumulators and every RNG state, plus the metrics
history, so metrics.jsonl can always be rebuilt to agree with the checkpoint it belongs to.

On CUDA it keeps the device busy: data and augmentation live on the GPU, losses and correct counts
accumulate on the device and are read once per epoch, and there is no per-step host synchronisation.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from wrn import checkpoint
from wrn.config import DATASET_SIZES, RunConfig, resolve, synthetic_sizes

METRICS = "metrics.jsonl"


class TrainingInterrupted(Exception):
    """Training stopped on request at a step boundary, after writing a checkpoint there."""

    def __init__(self, epoch: int, step: int):
        self.epoch, self.step = epoch, step
        super().__init__(f"stopped at epoch {epoch}, step {step}; checkpoint written")


def pick_device(device: str | torch.device | None = None) -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def runtime_settings(cfg: RunConfig, device: torch.device) -> dict[str, Any]:
    """How `cfg`'s "auto" systems fields resolve on `device`; recorded in every result."""
    precision = cfg.precision
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    channels_last = cfg.channels_last
    if channels_last == "auto":
        # Measured (benchmarks/train_speed.py): NHWC is faster on CPU in fp32 (1.13x) and bf16, and is
        # the layout bf16 tensor-core convolutions want on CUDA; fp32 on CUDA keeps NCHW.
        channels_last = "on" if precision == "bf16" or device.type == "cpu" else "off"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    return {
        "device": device.type,
        "device_name": name,
        "precision": precision,
        "channels_last": channels_last == "on",
        "tf32": cfg.tf32,
        "compile": cfg.compile,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "cpu"


def make_optimizer(model: torch.nn.Module, cfg: RunConfig, device: torch.device) -> torch.optim.SGD:
    """SGD exactly as optim.sgd in the Lua code: weight decay on all parameters (BN and fc bias
    included), dampening 0, Nesterov. Fused on CUDA (one kernel for the whole update)."""
    kwargs: dict[str, Any] = {"fused": True} if device.type == "cuda" else {"foreach": True}
    return torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=cfg.momentum, dampening=cfg.dampening,
        weight_decay=cfg.weight_decay, nesterov=cfg.nesterov, **kwargs,
    )


def autocast_context(settings: dict[str, Any], device: torch.device):
    if settings["precision"] == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def build_trainable(cfg: RunConfig, device: torch.device, settings: dict[str, Any]):
    """The network on `device` in its memory format, its optimizer, and the module the training step
    calls (compiled when `cfg.compile`): what the engine, the Figure 4 timing and the benchmarks
    train, built one way, with the CUDA backend switches (TF32 as `cfg.tf32`, cuDNN autotuning) set."""
    from wrn.models import build_model

    if device.type == "cuda":  # process-wide switches, set by whoever builds something to train
        torch.backends.cuda.matmul.allow_tf32 = cfg.tf32
        torch.backends.cudnn.allow_tf32 = cfg.tf32
        torch.backends.cudnn.benchmark = True
    model = build_model(cfg).to(device)
    if settings["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, cfg, device)
    step_model = torch.compile(model) if cfg.compile else model
    return model, step_model, optimizer


def training_step(step_model, optimizer, x: torch.Tensor, y: torch.Tensor, settings: dict[str, Any],
                  device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward, backward and SGD update; returns (loss, logits), both left on the device so that
    the caller decides when (if ever) to synchronise with the host."""
    if settings["channels_last"]:
        x = x.contiguous(memory_format=torch.channels_last)
    with autocast_context(settings, device):
        out = step_model(x)
        loss = F.cross_entropy(out.float(), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach(), out


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def synchronize(device: torch.device) -> None:
    """Wait for `device` to finish its queued work (a no-op on CPU), before reading a clock."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def evaluate(model, pipeline, settings, device) -> dict[str, float]:
    """Test loss, top-1 and top-5 error (percent) over the whole test set; one host sync at the end."""
    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    top1 = torch.zeros((), device=device, dtype=torch.int64)
    top5 = torch.zeros((), device=device, dtype=torch.int64)
    n = 0
    with torch.no_grad(), autocast_context(settings, device):
        for x, y in pipeline.test_batches():
            if settings["channels_last"]:
                x = x.contiguous(memory_format=torch.channels_last)
            out = model(x).float()
            loss_sum += F.cross_entropy(out, y, reduction="sum").double()
            top1 += (out.argmax(1) == y).sum()
            k = min(5, out.shape[1])
            top5 += (out.topk(k, dim=1).indices == y[:, None]).any(1).sum()
            n += y.numel()
    return {
        "test_loss": float(loss_sum) / n,
        "test_error": 100.0 * (1 - float(top1) / n),
        "test_top5_error": 100.0 * (1 - float(top5) / n),
    }


def check_data_source(cfg: RunConfig, train_size: int, test_size: int, data_dir) -> None:
    """Refuse to train a run on data other than what its config names: a "real" run on a folder of
    generated or partial data (or the reverse) would be stored as a result it is not."""
    from wrn.datasets import DataError

    expected = synthetic_sizes(cfg.data_source) or DATASET_SIZES[cfg.dataset]
    if (train_size, test_size) != expected:
        raise DataError(f"{data_dir}: {cfg.dataset} holds {train_size} train / {test_size} test images, "
                        f"but data_source={cfg.data_source!r} means {expected[0]} / {expected[1]}")


def train(
    cfg: RunConfig,
    run_dir: Path,
    data_dir: Path | None,
    device: str | torch.device | None = None,
    should_stop: Callable[[], bool] | None = None,
    progress: bool | None = None,
    download: bool = True,
) -> dict[str, Any]:
    """Train `cfg` in `run_dir`, resuming from its last good checkpoint; return the result summary.

    `should_stop` is polled at every step boundary; when it returns True a checkpoint of that exact
    step is written and `TrainingInterrupted` is raised. A non-finite training loss ends the run with
    status "diverged" and the (epoch, step) where it first appeared.
    """
    from wrn.data import make_pipeline
    from wrn.models import count_params, forward_flops

    cfg = resolve(cfg)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = pick_device(device)
    settings = runtime_settings(cfg, device)
    if progress is None:
        progress = sys.stderr.isatty()

    seed_everything(cfg.seed)
    pipeline = make_pipeline(cfg, data_dir, device, download=download)
    check_data_source(cfg, pipeline.train_size, pipeline.test_size, data_dir)
    model, step_model, optimizer = build_trainable(cfg, device, settings)
    params = count_params(model)

    state = checkpoint.load_latest(run_dir)
    history: list[dict[str, Any]] = []
    epoch, start_step, partial = 1, 0, None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        history = state["history"]
        epoch, start_step, partial = state["epoch"], state["step"], state.get("partial")
        _set_rng_state(state["rng"])
        print(f"resuming {run_dir.name} at epoch {epoch}, step {start_step}", file=sys.stderr, flush=True)
    _rewrite_metrics(run_dir, history)
    diverged = state.get("diverged") if state is not None else None

    steps = pipeline.steps_per_epoch
    bar = _progress_bar(progress, steps, run_dir.name)
    while diverged is None and epoch <= cfg.epochs:
        lr = cfg.lr_at(epoch)
        if cfg.reset_momentum_on_decay and start_step == 0 and epoch > 1 and lr != cfg.lr_at(epoch - 1):
            optimizer.state.clear()  # the Lua code rebuilds optim's state at every drop
        for group in optimizer.param_groups:
            group["lr"] = lr
        model.train()
        losses = torch.zeros(steps, device=device, dtype=torch.float32)
        correct = torch.zeros((), device=device, dtype=torch.int64)
        elapsed = 0.0
        if partial is not None:
            losses.copy_(partial["losses"].to(device))
            correct.fill_(int(partial["correct"]))
            elapsed = partial["elapsed"]
        synchronize(device)
        started = time.perf_counter()
        step = start_step
        for x, y in pipeline.train_batches(epoch, start_step):
            if should_stop is not None and should_stop():
                synchronize(device)
                partial = {"losses": losses.cpu(), "correct": int(correct),
                           "elapsed": elapsed + time.perf_counter() - started}
                _save(run_dir, model, optimizer, history, epoch, step, partial, None)
                raise TrainingInterrupted(epoch, step)
            loss, out = training_step(step_model, optimizer, x, y, settings, device)
            losses[step] = loss
            correct += (out.argmax(1) == y).sum()
            step += 1
            if bar is not None:
                bar.update(1)
        synchronize(device)
        train_time = elapsed + time.perf_counter() - started
        losses_cpu = losses.cpu()
        finite = torch.isfinite(losses_cpu)
        if not bool(finite.all()):
            bad = int((~finite).nonzero()[0, 0])
            diverged = {"epoch": epoch, "step": bad, "loss": str(float(losses_cpu[bad]))}
            _save(run_dir, model, optimizer, history, epoch, 0, None, diverged)
            break
        seen = steps * cfg.batch_size
        row = {
            "epoch": epoch,
            "lr": lr,
            "train_loss": float(losses_cpu.double().mean()),
            "train_error": 100.0 * (1 - int(correct) / seen),
            **evaluate(step_model, pipeline, settings, device),
            "train_time_s": train_time,
            "images_per_s": seen / train_time if train_time > 0 else float("nan"),
        }
        history.append(row)
        _save(run_dir, model, optimizer, history, epoch + 1, 0, None, None)
        with open(run_dir / METRICS, "a") as f:
            f.write(json.dumps(row) + "\n")
        if bar is not None:
            bar.set_postfix_str(f"epoch {epoch} test error {row['test_error']:.2f}%")
            bar.reset()
        epoch, start_step, partial = epoch + 1, 0, None
    if bar is not None:
        bar.close()

    times = [r["train_time_s"] for r in history]
    return {
        "kind": "train",
        "status": "diverged" if diverged is not None else "done",
        "final": None if diverged is not None or not history else {
            k: history[-1][k] for k in ("epoch", "lr", "train_loss", "train_error", "test_loss",
                                        "test_error", "test_top5_error")
        },
        "diverged": diverged,
        "params": params,
        "flops": forward_flops(cfg),
        "epoch_time_s": statistics.median(times) if times else None,
        "train_time_s": sum(times),
        "images_per_s": (len(times) * steps * cfg.batch_size / sum(times)) if times else None,
        "timing": None,
        "runtime": settings,
    }


def _save(run_dir, model, optimizer, history, epoch, step, partial, diverged) -> None:
    """Checkpoint the position "about to run `step` of `epoch`" (step 0: the epoch's start)."""
    checkpoint.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "history": history,
            "epoch": epoch,
            "step": step,
            "partial": partial,
            "diverged": diverged,
            "rng": _rng_state(),
        },
        run_dir,
    )


def _rewrite_metrics(run_dir: Path, history: list[dict[str, Any]]) -> None:
    """Make metrics.jsonl agree with the checkpoint it resumes from: lines written after that
    checkpoint (a kill between the two writes) or torn by a kill are dropped; atomic rename."""
    path = run_dir / METRICS
    tmp = run_dir / f".{METRICS}.tmp"
    with open(tmp, "w") as f:
        for row in history:
            f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _progress_bar(enabled: bool, steps: int, name: str):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=steps, desc=name, unit="step", leave=False, dynamic_ncols=True)

