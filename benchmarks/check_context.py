"""What every check of `benchmarks.device_checks` shares: the sizes it computes at (`FULL`, or `QUICK`
for `--quick`), its `Context` (device, sizes, scratch folder, the generated data), the bounds the
checks are held to, and how two losses or two states are compared.

The bounds are together here, beside what they were measured against, as the README's table of
checks states them; each check names the bounds it is held to.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from wrn.config import RunConfig, resolve
from wrn.data.fake import write_fake_dataset
from wrn.names import parse_label

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


@contextlib.contextmanager
def deterministic_cudnn() -> Iterator[None]:
    """cuDNN restricted to deterministic algorithms, the autotuner off (on a CPU, nothing changes)."""
    saved = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved


def vector(state: dict[str, torch.Tensor]) -> torch.Tensor:
    """Every floating-point tensor of a state dict as one float64 vector on the CPU."""
    return torch.cat([state[k].detach().double().cpu().flatten() for k in sorted(state) if state[k].is_floating_point()])


def loss_difference(loss: float, reference: float) -> float:
    """|loss - reference| relative to the reference loss, or in nats once it is below 1 (a run that
    has learnt its data has tiny losses, where a relative difference would only measure rounding)."""
    return abs(loss - reference) / max(abs(reference), 1.0)


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    """The L2 difference of `a` from `b`, relative to `b` (two states as `vector`s)."""
    return float((a - b).norm() / b.norm().clamp_min(1e-300))
