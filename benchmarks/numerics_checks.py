"""The numerics checks of `benchmarks.device_checks`: the paper profile's arithmetic is full fp32, its
training steps are the CPU's, and the fast profile (bf16) and torch.compile train as fp32 eager does.

Training trajectories diverge chaotically: two fp32 runs of the same steps that differ only in the
order of a few floating-point sums (GPU against CPU kernels, 1 against 2 CPU threads) are 50 % apart
in loss after 50 steps at the recipe's learning rate, as a run in float64 is from a run in fp32. So
two computations are compared *in lockstep*: before every step the reference is given the device's
exact state (weights, running statistics, momentum buffers) and the step's exact batch, and each
step's loss and resulting state are compared. A step is then held to fp32 rounding, at every step of
a real training trajectory; a wrong kernel, TF32 left on or a lost momentum buffer shows in the first
step it touches.

Apart from the engine's checks (`benchmarks.engine_checks`) because these hold whole training steps
to rounding: the lockstep machinery (`lockstep`) serves them alone.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from benchmarks.check_context import (BF16_STEP_LOSS, COMPILED_STEP_LOSS, FP32_OP, LOSS_FALLS, STEP_LOSS, STEP_STATE,
                                      Context, Outcome, deterministic_cudnn, loss_difference, relative, vector)
from benchmarks.input_speed import torch_threads
from wrn.config import RunConfig
from wrn.data.tensor_pipeline import make_pipeline
from wrn.runtime import runtime_settings, set_cuda_switches
from wrn.train import build_trainable, seed_everything, set_epoch_learning_rate, training_step


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


def _state_vector(model: torch.nn.Module) -> torch.Tensor:
    return vector(model.state_dict())


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
            differences.append(relative(_state_vector(checked.model), _state_vector(reference.model)))
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
