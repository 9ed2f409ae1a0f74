"""The correctness checks of `python -m benchmarks.gpu_check`: what the suite computes on a device, held
against what it computes on the CPU (or in fp32, or eagerly), on generated data in the real formats.

Each check returns (passed, detail): True or False with the numbers it judged, or None with the reason
it cannot run here (a CUDA-only check on a CPU, NCCL with one GPU). The tolerances are stated beside
each check and measured on the CPU where the CPU can show them.

Training trajectories diverge chaotically: two fp32 runs of the same steps that differ only in the
order of a few floating-point sums (GPU against CPU kernels, 1 against 2 CPU threads) are 50 % apart
in loss after 50 steps at the recipe's learning rate, as a run in float64 is from a run in fp32. So
two computations are compared *in lockstep*: before every step the reference is given the device's
exact state (weights, running statistics, momentum buffers) and the step's exact batch, and each
step's loss and resulting state are compared. A step is then held to fp32 rounding, at every step of
a real training trajectory; a wrong kernel, TF32 left on or a lost momentum buffer shows in the first
step it touches.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.input_speed import bench_config as imagenet_config
from benchmarks.input_speed import grey_level_difference, torch_threads, write_jpeg_set
from experiments.executors import rank_environments
from wrn import checkpoint, distributed
from wrn.config import RunConfig, resolve
from wrn.data.fake import write_fake_dataset
from wrn.data.imagenet import ImageNetPipeline
from wrn.data.tensor_pipeline import make_pipeline
from wrn.names import parse_label
from wrn.runtime import runtime_settings, set_cuda_switches, synchronize
from wrn.train import (TrainingInterrupted, build_trainable, make_optimizer, prepare_training, seed_everything,
                       set_epoch_learning_rate, train, training_step)

ROOT = Path(__file__).resolve().parents[1]
Outcome = tuple[bool | None, str]

# Tolerances. A step's loss is compared relative to the loss, or absolutely (in nats) once it is below 1;
# a state (every floating-point tensor of the model) as one vector, relative L2. Measured here, one
# step at a time over 200 steps (WRN-16-1, batch 64, lr 0.1): fp32 against float64, the loss within
# 1.1e-5 and the state within 1.4e-6; the CPU on 2 threads against 1, 1.6e-5 and 4.9e-6. A GPU's fp32
# kernels (cuDNN's Winograd among them) round differently again, so steps are held to 1e-4: a real
# fault (a wrong kernel, a batch or a buffer out of place) is off by 1e-2 or more from its first step.
FP32_OP = 1e-5  # a matrix multiply or convolution against float64 (TF32's 10-bit mantissa gives ~1e-3)
STEP_LOSS = 1e-4  # a step's loss, device against CPU
STEP_STATE = 1e-4  # the state after a step
BF16_STEP_LOSS = 5e-2  # a bf16 autocast step's loss against fp32's from the same state (8-bit mantissa)
COMPILED_STEP_LOSS = 1e-4  # a compiled step against an eager one: fused kernels reorder sums
RESUMED_AUTOTUNED = 1e-3  # resumed against uninterrupted when cuDNN may pick non-deterministic algorithms
LOSS_FALLS = 0.8  # a run "trains": the mean loss of its last steps at most this fraction of its first's
# Grey levels (0-255) between the tensor input path (nvJPEG on CUDA) and PIL: measured on the CPU at
# most 4.5 (0.04 on average) for training crops with colour augmentation and 1 (0.004) for test crops;
# nvJPEG's IDCT may add a level or two.
JPEG_TRAIN = (8.0, 0.25)  # (largest, mean)
JPEG_TEST = (4.0, 0.1)


@dataclass(frozen=True)
class Sizes:
    """How much each check computes: the full check on a GPU, or `--quick` sizes for the CPU."""

    model: str  # the network of the training checks
    train_images: int
    batch_size: int
    lockstep_steps: int
    mode_steps: int  # steps of the bf16 and compiled checks
    jpeg_images: int


FULL = Sizes(model="WRN-16-1", train_images=2048, batch_size=64, lockstep_steps=200, mode_steps=100,
             jpeg_images=32)
QUICK = Sizes(model="WRN-10-1", train_images=256, batch_size=32, lockstep_steps=24, mode_steps=40,
              jpeg_images=16)


TEST_IMAGES = 64


@dataclass
class Context:
    """What every check shares: the device, its sizes, and a scratch folder for generated data and run
    directories."""

    device: torch.device
    sizes: Sizes
    work_dir: Path

    def config(self, train_images: int | None = None, **overrides) -> RunConfig:
        """The paper's CIFAR-10 recipe for the check network on generated data of `train_images`
        (default: the sizes'), mean/std normalisation; the learning rate never drops within a check."""
        n = train_images or self.sizes.train_images
        fields = dict(dataset="cifar10", data_source=f"synthetic:{n}:{TEST_IMAGES}", **parse_label(self.sizes.model),
                      preprocessing="meanstd", batch_size=self.sizes.batch_size, eval_batch_size=TEST_IMAGES,
                      seed=0, epochs=2, lr_milestones=(100,))
        return resolve(RunConfig(**{**fields, **overrides}))

    def data(self, cfg: RunConfig) -> Path:
        """The generated CIFAR-10 that `cfg`'s data_source names, written on first use."""
        _, train_images, test_images = cfg.data_source.split(":")
        root = self.work_dir / f"cifar10-{train_images}-{test_images}"
        if not root.exists():
            write_fake_dataset("cifar10", root, int(train_images), int(test_images), seed=0)
        return root


# ------------------------------------------------------------------------------------------------
# Numerics


@contextlib.contextmanager
def deterministic_cudnn() -> Iterator[None]:
    """cuDNN restricted to deterministic algorithms, the autotuner off (on a CPU, nothing changes)."""
    saved = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved


def _op_error(op: Callable[..., torch.Tensor], inputs: list[torch.Tensor], device: torch.device) -> float:
    """Largest |device fp32 - float64| of `op`, relative to the largest |float64| value."""
    exact = op(*[t.double() for t in inputs])
    got = op(*[t.to(device) for t in inputs]).double().cpu()
    return float((got - exact).abs().max() / exact.abs().max())


def paper_numerics_are_fp32(ctx: Context) -> Outcome:
    """The paper profile's switches (TF32 off) give full fp32 matrix multiplies and convolutions."""
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(512, 512, generator=generator) for _ in range(2))
    x, w = torch.randn(8, 64, 32, 32, generator=generator), torch.randn(64, 64, 3, 3, generator=generator)
    conv = lambda x, w: F.conv2d(x, w, padding=1)  # noqa: E731
    errors = {}
    for tf32 in (False, True) if ctx.device.type == "cuda" else (False,):
        if ctx.device.type == "cuda":
            set_cuda_switches(tf32)
        errors[tf32] = (_op_error(torch.mm, [a, b], ctx.device), _op_error(conv, [x, w], ctx.device))
    if ctx.device.type == "cuda":
        set_cuda_switches(False)
    mm, cv = errors[False]
    detail = f"matmul {mm:.1e}, conv {cv:.1e} from float64 (bound {FP32_OP:g})"
    if True in errors:
        detail += f"; with TF32 on: {errors[True][0]:.1e}, {errors[True][1]:.1e}"
    return max(mm, cv) <= FP32_OP, detail


@dataclass
class _Side:
    """A model, its optimizer and its step, as the engine builds them for a config on a device."""

    cfg: RunConfig
    device: torch.device

    def __post_init__(self) -> None:
        self.settings = runtime_settings(self.cfg, self.device)
        self.model, self.step_model, self.optimizer = build_trainable(self.cfg, self.device, self.settings)
        self.model.train()

    def step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        loss, _ = training_step(self.step_model, self.optimizer, x.to(self.device), y.to(self.device),
                                self.settings, self.device)
        return float(loss)

    def take_state_of(self, other: _Side) -> None:
        """This side's weights, running statistics and momentum buffers set to a copy of `other`'s."""
        self.model.load_state_dict(other.model.state_dict())
        self.optimizer.load_state_dict(copy.deepcopy(other.optimizer.state_dict()))


def _vector(state: dict[str, torch.Tensor]) -> torch.Tensor:
    """Every floating-point tensor of a state dict as one float64 vector on the CPU."""
    return torch.cat([state[k].detach().double().cpu().flatten() for k in sorted(state) if state[k].is_floating_point()])


def _state_vector(model: torch.nn.Module) -> torch.Tensor:
    return _vector(model.state_dict())


def loss_difference(loss: float, reference: float) -> float:
    """|loss - reference| relative to the reference loss, or in nats once it is below 1 (a run that
    has learnt its data has tiny losses, where a relative difference would only measure rounding)."""
    return abs(loss - reference) / max(abs(reference), 1.0)


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


@dataclass
class Lockstep:
    """Per step: the loss of the side under check and of the reference from the same state, and the
    relative difference of their states after the step."""

    losses: list[float]
    reference_losses: list[float]
    state_differences: list[float]

    @property
    def worst_loss_difference(self) -> float:
        return max(loss_difference(a, b) for a, b in zip(self.losses, self.reference_losses))

    def falls(self) -> tuple[bool, float, float]:
        """Whether the checked side trained: its last steps' mean loss against its first steps'."""
        k = max(1, len(self.losses) // 8)
        first, last = sum(self.losses[:k]) / k, sum(self.losses[-k:]) / k
        return last <= LOSS_FALLS * first, first, last


def lockstep(ctx: Context, checked: _Side, reference: _Side, steps: int,
             reference_threads: int | None = None) -> Lockstep:
    """`steps` training steps of `checked` over its generated data, each also taken by `reference`
    from `checked`'s state before it (module docstring), with `reference_threads` CPU threads."""
    pipeline = make_pipeline(checked.cfg, ctx.data(checked.cfg), checked.device, download=False)
    losses, reference_losses, differences = [], [], []
    epoch = 0
    while len(losses) < steps:
        epoch += 1
        for side in (checked, reference):
            set_epoch_learning_rate(side.optimizer, side.cfg, epoch, starting=True)
        for x, y in pipeline.train_batches(epoch):
            reference.take_state_of(checked)
            losses.append(checked.step(x, y))
            with torch_threads(reference_threads or torch.get_num_threads()):
                reference_losses.append(reference.step(x, y))
            differences.append(_relative(_state_vector(checked.model), _state_vector(reference.model)))
            if len(losses) == steps:
                break
    return Lockstep(losses, reference_losses, differences)


def paper_steps_match_cpu(ctx: Context) -> Outcome:
    """Every step of the paper profile (fp32, TF32 off, deterministic cuDNN) on the device equals the
    same step on the CPU to fp32 rounding. On a CPU the reference is the CPU on one thread, whose sums
    run in another order."""
    cfg = ctx.config(precision="fp32", tf32=False)
    with deterministic_cudnn():
        seed_everything(0)
        checked = _Side(cfg, ctx.device)
        reference = _Side(cfg, torch.device("cpu"))
        result = lockstep(ctx, checked, reference, ctx.sizes.lockstep_steps,
                          reference_threads=1 if ctx.device.type == "cpu" else None)
    loss, state = result.worst_loss_difference, max(result.state_differences)
    against = "the CPU on 1 thread" if ctx.device.type == "cpu" else "the CPU"
    return loss <= STEP_LOSS and state <= STEP_STATE, (
        f"{len(result.losses)} steps of {ctx.sizes.model} against {against}: loss within {loss:.1e} "
        f"(bound {STEP_LOSS:g}), state within {state:.1e} (bound {STEP_STATE:g}) at every step")


def _mode_trains(ctx: Context, name: str, mode: dict, bound: float) -> Outcome:
    """`mode` (config fields) trains: its loss falls over the check's steps, and every step's loss is
    within `bound` of the fp32 eager step's from the same state on the same device."""
    seed_everything(0)
    checked = _Side(ctx.config(**mode), ctx.device)
    reference = _Side(ctx.config(precision="fp32", tf32=False), ctx.device)
    result = lockstep(ctx, checked, reference, ctx.sizes.mode_steps)
    falls, first, last = result.falls()
    worst = result.worst_loss_difference
    return falls and worst <= bound, (
        f"{name}: loss {first:.3f} -> {last:.3f} over {len(result.losses)} steps (must fall below "
        f"{LOSS_FALLS:g}x); each step within {worst:.1e} of fp32 eager's (bound {bound:g})")


def fast_profile_trains(ctx: Context) -> Outcome:
    """The fast profile's numerics: bf16 autocast, channels_last, TF32."""
    return _mode_trains(ctx, "bf16, channels_last, TF32", {"precision": "bf16", "channels_last": "on", "tf32": True},
                        BF16_STEP_LOSS)


def compiled_trains(ctx: Context) -> Outcome:
    """torch.compile of the paper profile's network."""
    return _mode_trains(ctx, "torch.compile, fp32", {"precision": "fp32", "compile": True}, COMPILED_STEP_LOSS)


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
                 for k in ("train_loss", "test_loss")] + [_relative(_vector(wa), _vector(wb))])
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
    free-running steps diverge chaotically, as the module docstring says: over 12 steps the same
    comparison ranged from 5e-4 to 2e-2 between two small networks.)"""
    if ctx.device.type == "cuda" and torch.cuda.device_count() < 2:
        return None, f"needs 2 GPUs, one per process; this machine has {torch.cuda.device_count()}"
    one = ctx.config(train_images=32, epochs=1, batch_size=32)
    two = dataclasses.replace(one, world_size=2, sync_bn=True)
    train(one, ctx.work_dir / "ddp-one", ctx.data(one), ctx.device, progress=False, download=False)
    _train_processes(two, ctx.work_dir / "ddp-two", ctx)
    wa, wb = (checkpoint.load_latest(ctx.work_dir / name)["model"] for name in ("ddp-two", "ddp-one"))
    difference = _relative(_vector(wa), _vector(wb))
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


CHECKS: dict[str, Callable[[Context], Outcome]] = {
    "paper_numerics_are_fp32": paper_numerics_are_fp32,
    "paper_steps_match_cpu": paper_steps_match_cpu,
    "resume_is_exact": resume_is_exact,
    "fused_sgd_equals_foreach": fused_sgd_equals_foreach,
    "no_host_sync_per_step": no_host_sync_per_step,
    "pipeline_on_device_matches_cpu": pipeline_on_device_matches_cpu,
    "jpeg_decoders_agree": jpeg_decoders_agree,
    "fast_profile_trains": fast_profile_trains,
    "compiled_trains": compiled_trains,
    "data_parallel_equals_one_process": data_parallel_equals_one_process,
}


def run_check(name: str, ctx: Context) -> dict:
    """One check as the report lists it: {name, passed (None: skipped), detail, seconds}; an exception
    is a failure with its message."""
    started = time.monotonic()
    try:
        passed, detail = CHECKS[name](ctx)
    except Exception as e:  # noqa: BLE001 - a check that cannot complete has failed, and says why
        passed, detail = False, f"raised {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    finally:
        synchronize(ctx.device)
    return {"name": name, "passed": passed, "detail": detail, "seconds": round(time.monotonic() - started, 2)}


def scratch() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="wrn-gpu-check-")
