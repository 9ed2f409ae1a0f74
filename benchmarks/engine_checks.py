"""The engine's checks of `benchmarks.device_checks`: a resumed run equals an uninterrupted one, fused
SGD steps as foreach SGD, an epoch's steps never make the host wait, the data pipelines on the device
make the CPU's batches, nvJPEG decodes as PIL does, and two processes with sync_bn train what one
does.

Apart from the numerics (`benchmarks.numerics_checks`) because these check the engine's parts
around the arithmetic: its state, its optimizer, its input paths and its processes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.check_context import (JPEG_TEST, JPEG_TRAIN, RESUMED_AUTOTUNED, STEP_LOSS, STEP_STATE, Context, Outcome,
                                      deterministic_cudnn, loss_difference, relative, vector)
from benchmarks.input_speed import bench_config as imagenet_config
from benchmarks.input_speed import grey_level_difference, write_jpeg_set
from experiments.executors import rank_environments
from wrn import checkpoint, distributed
from wrn.config import RunConfig
from wrn.data.tensor_pipeline import make_pipeline
from wrn.data.imagenet import ImageNetPipeline
from wrn.train import TrainingInterrupted, make_optimizer, prepare_training, set_epoch_learning_rate, train

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------------
# The engine


def _run_metrics(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("train_time_s", "images_per_s")} for r in rows]


def _resumed_against_straight(ctx: Context, cfg: RunConfig, where: Path) -> tuple[bool, float]:
    """(bit-identical, largest relative difference of any epoch's losses or of the final state) of a
    run stopped after 3 steps and resumed, against the same run uninterrupted."""
    train(cfg, where / "straight", ctx.data(cfg), ctx.device, progress=False, download=False)
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    with contextlib.suppress(TrainingInterrupted):
        train(cfg, where / "resumed", ctx.data(cfg), ctx.device, should_stop=stop, progress=False, download=False)
    train(cfg, where / "resumed", ctx.data(cfg), ctx.device, progress=False, download=False)
    a, b = _run_metrics(where / "resumed"), _run_metrics(where / "straight")
    wa, wb = (checkpoint.load_latest(where / name)["model"] for name in ("resumed", "straight"))
    identical = a == b and all(torch.equal(wa[k], wb[k]) for k in wb)
    worst = max([abs(ra[k] - rb[k]) / max(abs(rb[k]), 1e-12) for ra, rb in zip(a, b)
                 for k in ("train_loss", "test_loss")] + [relative(vector(wa), vector(wb))])
    return identical, worst


def resume_is_exact(ctx: Context) -> Outcome:
    """A run stopped mid-epoch and resumed (dropout on: the device's generator is restored too) equals
    the uninterrupted run: bit for bit with deterministic cuDNN; with the engine's autotuned cuDNN,
    whose algorithms may add in another order from run to run, within RESUMED_AUTOTUNED."""
    cfg = ctx.config(dropout=0.3, epochs=2)
    with deterministic_cudnn():
        exact, worst = _resumed_against_straight(ctx, cfg, ctx.work_dir / "resume-deterministic")
    detail = "deterministic: " + ("bit-identical" if exact else f"NOT bit-identical (differs by {worst:.1e})")
    if ctx.device.type != "cuda":
        return exact, detail
    tuned_exact, tuned_worst = _resumed_against_straight(ctx, cfg, ctx.work_dir / "resume-autotuned")
    detail += "; autotuned: " + ("bit-identical" if tuned_exact else
                                 f"within {tuned_worst:.1e} (bound {RESUMED_AUTOTUNED:g})")
    return exact and (tuned_exact or tuned_worst <= RESUMED_AUTOTUNED), detail


def fused_sgd_equals_foreach(ctx: Context) -> Outcome:
    """Fused SGD (one kernel for the whole update: the engine's optimizer on CUDA) steps as foreach SGD
    does, with the engine's hyperparameters, over 20 steps in float64 with the momentum buffers
    cleared at a learning-rate drop in the middle."""
    cfg = ctx.config(lr_milestones=(60,), epochs=60)
    generator = torch.Generator().manual_seed(5)
    start = [torch.randn(shape, dtype=torch.float64, generator=generator).to(ctx.device)
             for shape in ((16, 8), (16,), (4, 16), (4,))]
    engine = make_optimizer(_Holding(start), cfg, ctx.device)
    hyper = {k: engine.defaults[k] for k in ("lr", "momentum", "dampening", "weight_decay", "nesterov")}
    runs = {}
    for kind in ("fused", "foreach"):
        params = [p.clone().requires_grad_() for p in start]
        optimizer = torch.optim.SGD(params, **hyper, **{kind: True})
        generator = torch.Generator().manual_seed(6)
        for epoch in (59, 60):
            set_epoch_learning_rate(optimizer, cfg, epoch, starting=True)
            for _ in range(10):
                for p in params:
                    p.grad = torch.randn(p.shape, dtype=torch.float64, generator=generator).to(ctx.device)
                optimizer.step()
        runs[kind] = torch.cat([p.detach().flatten() for p in params]).cpu()
    difference = float((runs["fused"] - runs["foreach"]).abs().max())
    moved = float((runs["foreach"] - torch.cat([p.flatten() for p in start]).cpu()).abs().max())
    used = "fused" if engine.defaults.get("fused") else "foreach"
    return difference <= 1e-12 and moved > 0 and (used == "fused") == (ctx.device.type == "cuda"), (
        f"fused against foreach SGD over 20 steps and a reset: largest difference {difference:.1e} (bound "
        f"1e-12); the engine steps with {used} SGD here")


@dataclass
class _Holding:
    """What `make_optimizer` takes from a model: its parameters."""

    params: list[torch.Tensor]

    def parameters(self) -> list[torch.Tensor]:
        return self.params


def no_host_sync_per_step(ctx: Context) -> Outcome:
    """An epoch of the engine's steps (data, augmentation, forward, backward, fused update, the losses
    and counts kept on the device) under torch.cuda.set_sync_debug_mode("error"): any operation that
    makes the host wait for the device raises. The once-per-epoch reads are outside it; a first epoch
    runs before it (cuDNN's autotuner times its candidates once per shape)."""
    if ctx.device.type != "cuda":
        return None, "CUDA only (torch.cuda.set_sync_debug_mode)"
    cfg = ctx.config(epochs=2)
    trainer = prepare_training(cfg, ctx.work_dir / "sync", ctx.data(cfg), ctx.device, progress=False, download=False)
    position = trainer.restore()
    trainer.run_epoch(position)
    trainer.model.train()
    losses, correct, _ = trainer.accumulators(position)
    torch.cuda.synchronize(ctx.device)
    torch.cuda.set_sync_debug_mode("error")
    try:
        trainer.step_through(position, losses, correct, lambda: 0.0)
    except RuntimeError as e:
        return False, f"a step synchronised with the host: {str(e).splitlines()[0]}"
    finally:
        torch.cuda.set_sync_debug_mode(0)
    return True, f"{trainer.pipeline.steps_per_epoch} steps without a host synchronisation"


def pipeline_on_device_matches_cpu(ctx: Context) -> Outcome:
    """The training and test batches built on the device (shuffle; crops and flips drawn per image, per
    minibatch, with zero padding; mean/std or ZCA) are the CPU's: exactly for mean/std, within 1e-5
    for ZCA (its float64 whitening adds in another order on a GPU)."""
    worst = {}
    for name, fields in (("per-image", {}), ("v1 per-batch", {"recipe": "v1-2016-05"}),
                         ("zero padding", {"pad_mode": "zeros"}), ("ZCA", {"preprocessing": "zca"})):
        cfg = ctx.config(**fields)
        sides = []
        for device in (ctx.device, torch.device("cpu")):
            pipeline = make_pipeline(cfg, ctx.data(cfg), device, download=False)
            sides.append([(x.cpu(), y.cpu()) for x, y in [*pipeline.train_batches(1), *pipeline.test_batches()]])
        same_labels = len(sides[0]) == len(sides[1]) and all(torch.equal(a[1], b[1]) for a, b in zip(*sides))
        worst[name] = max(float((a[0] - b[0]).abs().max()) for a, b in zip(*sides)) if same_labels else math.inf
    zca = worst.pop("ZCA")
    detail = ", ".join(f"{k} {'identical' if v == 0 else f'differ by {v:.1e}'}" for k, v in worst.items())
    return all(v == 0 for v in worst.values()) and zca <= 1e-5, f"{detail}; ZCA within {zca:.1e} (bound 1e-5)"


def jpeg_decoders_agree(ctx: Context) -> Outcome:
    """ImageNet's tensor input path (torchvision.io decoding: nvJPEG on CUDA) makes the pixels the PIL
    path makes from the same JPEGs, crops and flips, to the resamplers' rounding."""
    root = ctx.work_dir / "jpeg"
    images = write_jpeg_set(root, ctx.sizes.jpeg_images, ctx.sizes.jpeg_images)
    out = {}
    for split in ("train", "test"):
        first = {}
        for path in ("pil", "tensor"):
            pipeline = ImageNetPipeline(imagenet_config(path, 8, images), root, ctx.device, workers=0)
            batches = pipeline.train_batches(1) if split == "train" else pipeline.test_batches()
            with contextlib.closing(batches):
                first[path] = next(iter(batches))[0].cpu()
        out[split] = grey_level_difference(first["tensor"], first["pil"])
    ok = all(out[s]["max"] <= bound[0] and out[s]["mean"] <= bound[1]
             for s, bound in (("train", JPEG_TRAIN), ("test", JPEG_TEST)))
    decoder = "nvJPEG" if ctx.device.type == "cuda" else "libjpeg-turbo (torchvision)"
    return ok, (f"{decoder} against PIL, grey levels: training crops at most {out['train']['max']:.2f} "
                f"(mean {out['train']['mean']:.3f}; bounds {JPEG_TRAIN[0]:g}, {JPEG_TRAIN[1]:g}), test crops at most "
                f"{out['test']['max']:.2f} (mean {out['test']['mean']:.3f}; bounds {JPEG_TEST[0]:g}, {JPEG_TEST[1]:g})")


# ------------------------------------------------------------------------------------------------
# Data parallelism


def data_parallel_equals_one_process(ctx: Context) -> Outcome:
    """A step of two processes with batch norm over the whole batch (NCCL on 2 GPUs, gloo on a CPU)
    is the step of one process on the same global batch: the gradients' all-reduce, the synchronised
    batch statistics, their backward and the update, held to fp32 rounding. (One step, since several
    free-running steps diverge chaotically, as `benchmarks.numerics_checks` says: over 12 steps the
    same comparison ranged from 5e-4 to 2e-2 between two small networks.)"""
    if ctx.device.type == "cuda" and torch.cuda.device_count() < 2:
        return None, f"needs 2 GPUs, one per process; this machine has {torch.cuda.device_count()}"
    one = ctx.config(train_images=32, epochs=1, batch_size=32)
    two = dataclasses.replace(one, world_size=2, sync_bn=True)
    train(one, ctx.work_dir / "ddp-one", ctx.data(one), ctx.device, progress=False, download=False)
    _train_processes(two, ctx.work_dir / "ddp-two", ctx)
    wa, wb = (checkpoint.load_latest(ctx.work_dir / name)["model"] for name in ("ddp-two", "ddp-one"))
    difference = relative(vector(wa), vector(wb))
    (la,), (lb,) = (_run_metrics(ctx.work_dir / name) for name in ("ddp-two", "ddp-one"))
    loss = loss_difference(la["train_loss"], lb["train_loss"])
    backend = "NCCL" if ctx.device.type == "cuda" else "gloo"
    return difference <= STEP_STATE and loss <= STEP_LOSS, (
        f"a step of 2 processes ({backend}, sync_bn, 16 images each) against 1 process of 32: loss within "
        f"{loss:.1e} (bound {STEP_LOSS:g}), state within {difference:.1e} (bound {STEP_STATE:g})")


def _train_processes(cfg: RunConfig, run_dir: Path, ctx: Context) -> None:
    """Train `cfg` as its `world_size` processes of `python -m benchmarks.gpu_check --train-rank`."""
    procs = []
    for env in rank_environments(cfg.world_size):
        argv = [sys.executable, "-m", "benchmarks.gpu_check", "--train-rank", json.dumps(cfg.to_dict()),
                str(run_dir), str(ctx.data(cfg)), "--device", ctx.device.type]
        extra = {"OMP_NUM_THREADS": str(max(1, torch.get_num_threads() // cfg.world_size))}
        procs.append(subprocess.Popen(argv, cwd=ROOT, env=dict(os.environ, **env, **extra), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=600) for p in procs]
    failed = [(rank, p.returncode, err) for rank, (p, (_, err)) in enumerate(zip(procs, outputs)) if p.returncode]
    if failed:
        rank, code, err = failed[0]
        raise RuntimeError(f"rank {rank} exited {code}: {' | '.join(err.strip().splitlines()[-3:])}")


def train_rank(config: str, run_dir: str, data_dir: str, device: str) -> int:
    """One process of `_train_processes` (torch's env:// variables set by the parent). It leaves the
    process group before it exits: a group left to the interpreter's exit can abort it."""
    try:
        train(RunConfig.from_dict(json.loads(config)), Path(run_dir), Path(data_dir), device, progress=False,
              download=False)
    finally:
        distributed.leave()
    return 0
