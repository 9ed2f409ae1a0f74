"""ImageNet's input pipelines: JPEG files in, training and test batches on the device out.

The transform is wrn.data.imagenet_augment's recipe (fb.resnet.torch's, or with `color_augment` off the
earlier torchvision one). Every image's random draws come from a generator seeded by (seed, epoch,
position in the epoch), in whichever worker process it is loaded, so nothing depends on worker
scheduling and `train_batches(e, start_step=s)` is the tail of `train_batches(e)`. Two paths
(`RunConfig.input_pipeline`, `resolved_input_pipeline`) turn the files into uint8 crops:

* pil, the portable one: DataLoader workers decode with PIL and crop and resize it (PIL's resampling).
* tensor: workers read the file bytes and the JPEG header (its size, for the draws); torchvision.io's
  decode_jpeg decodes a batch at once on the device, through nvJPEG on CUDA (in the workers on a CPU),
  then each image is cropped and resized by torchvision.transforms.v2 (antialiased, as PIL is). A file
  that is not a JPEG, or a CMYK one, is decoded by PIL in the worker, as the pil path would.

Then, on the training device and batched for both paths, x / 255, the colour augmentation, mean/std
and the flips (`wrn.data.imagenet_augment.finish_batch`). Both paths make the same crops and flips from
the same seed; their pixels differ only by the resamplers' rounding (PIL's fixed-point passes against
torch's), which the colour augmentation's contrast and saturation can amplify. Measured on the
CPU over 256 generated 500x375 JPEGs at 224 (benchmarks/input_speed.py's): fb.resnet.torch's recipe
(bicubic, colour) at most 4.5 grey levels apart, 0.04 on average (0.079 and 0.0007 after mean/std),
its test crops at most 1 level, 0.004 on average; the torchvision recipe (bilinear) at most 1 level,
0.04 on average; the same on wrn.data.fake's 48x40 JPEGs at 24 and 64. libjpeg-turbo through PIL
and through torchvision on the CPU decode identically; nvJPEG's IDCT may add a level or so, which
the GPU check bounds (`python -m benchmarks.gpu_check`, `jpeg_decoders_agree`).

Under data parallelism every process works through the same global batches and loads only its share
of each (`DataPipeline.share_bounds`): the union of the shares is, image for image, the batch one
process would train on. The test set is split into `test_share`s.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg

from wrn.config import RunConfig, resolved_input_pipeline
from wrn.data.datasets import load_image_folders
from wrn.data.imagenet_augment import BatchDraws, Draws, Plan, Recipe, finish_batch, recipe_for
from wrn.data.pipeline import Batch, DataPipeline, derived_seed, epoch_permutation
from wrn.runtime import host_to_device, on_device

NVJPEG_MODES = ("RGB", "L")  # JPEG colour modes decode_jpeg turns into RGB as PIL's convert("RGB") does


# ------------------------------------------------------------------------------------------------
# Worker side: a job is one batch of one process
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Job:
    """The (path, label) of a batch's images and, for a training batch, each image's seed."""

    samples: tuple[tuple[str, int], ...]
    seeds: tuple[int, ...] | None


@dataclass(frozen=True)
class _Payloads:
    """A batch's JPEG bytes in one tensor, as a worker hands them over: one shared-memory block per
    batch, where a tensor per file would hold a file descriptor each, hundreds per batch in flight.
    `lengths[i]` is image i's byte count, 0 for an image decoded in the worker (in `decoded`)."""

    blob: torch.Tensor
    lengths: tuple[int, ...]
    decoded: tuple[torch.Tensor, ...]

    @classmethod
    def pack(cls, payloads: list[torch.Tensor]) -> _Payloads:
        encoded = [p for p in payloads if p.dim() == 1]
        blob = torch.cat(encoded) if encoded else torch.empty(0, dtype=torch.uint8)
        return cls(blob, tuple(len(p) if p.dim() == 1 else 0 for p in payloads),
                   tuple(p for p in payloads if p.dim() != 1))

    def unpack(self) -> list[torch.Tensor]:
        pieces = iter(self.blob.split([n for n in self.lengths if n]))
        decoded = iter(self.decoded)
        return [next(pieces) if n else next(decoded) for n in self.lengths]


@dataclass(frozen=True)
class _Loaded:
    """A worker's batch: labels, the draws of a training batch, and either the uint8 crops (n, 3, S,
    S) or what the device turns into them (JPEG bytes or decoded images, with their plans)."""

    labels: torch.Tensor
    draws: BatchDraws | None
    crops: torch.Tensor | None = None
    payloads: _Payloads | None = None
    plans: list[Plan] | None = None

    def pin_memory(self) -> _Loaded:
        """For the DataLoader's pinning thread, so that the copies to the GPU are asynchronous."""
        return replace(self, labels=self.labels.pin_memory(),
                       draws=None if self.draws is None else self.draws.pin_memory(),
                       crops=None if self.crops is None else self.crops.pin_memory())


def _stack(crops: list[torch.Tensor], size: int) -> torch.Tensor:
    """The batch of crops; an empty share (a last batch smaller than the processes) is empty."""
    return torch.stack(crops) if crops else torch.empty((0, 3, size, size), dtype=torch.uint8)


class _Loader:
    """Turns a `_Job` into a `_Loaded` in a DataLoader worker (picklable: no lambdas)."""

    def __init__(self, recipe: Recipe, size: int, hflip: bool):
        self.recipe, self.size, self.hflip = recipe, size, hflip

    def plan(self, job: _Job, i: int, height: int, width: int) -> tuple[Plan, Draws | None]:
        """Image i's plan, and its draws for a training batch."""
        return self.recipe.plan(height, width, self.size, None if job.seeds is None else job.seeds[i], self.hflip)

    @staticmethod
    def loaded(job: _Job, draws: list[Draws | None], **images) -> _Loaded:
        labels = torch.tensor([label for _, label in job.samples], dtype=torch.int64)
        return _Loaded(labels, None if job.seeds is None else BatchDraws.of(draws), **images)


class _PilLoader(_Loader):
    """PIL decodes (ImageFolder's loader: convert("RGB")), crops and resizes, image by image."""

    def __call__(self, job: _Job) -> _Loaded:
        crops, draws = [], []
        for i, (path, _) in enumerate(job.samples):
            with open(path, "rb") as f:
                image = Image.open(f).convert("RGB")
            plan, image_draws = self.plan(job, i, image.height, image.width)
            crops.append(TF.pil_to_tensor(_apply_pil(image, plan, self.recipe.pil_resample)))
            draws.append(image_draws)
        return self.loaded(job, draws, crops=_stack(crops, self.size))


class _TensorLoader(_Loader):
    """Reads the bytes and the JPEG header (its size, for the plan); decodes and crops too when the
    device is a CPU. A file decode_jpeg would not decode as PIL does is decoded by PIL here."""

    def __init__(self, recipe: Recipe, size: int, hflip: bool, decode_here: bool):
        super().__init__(recipe, size, hflip)
        self.decode_here = decode_here

    def __call__(self, job: _Job) -> _Loaded:
        payloads, plans, draws = [], [], []
        for i, (path, _) in enumerate(job.samples):
            raw = Path(path).read_bytes()
            with Image.open(io.BytesIO(raw)) as header:  # reads the header, decodes nothing
                plan, image_draws = self.plan(job, i, header.height, header.width)
                if header.format == "JPEG" and header.mode in NVJPEG_MODES:
                    payloads.append(torch.frombuffer(bytearray(raw), dtype=torch.uint8))
                else:
                    payloads.append(TF.pil_to_tensor(header.convert("RGB")))
            plans.append(plan)
            draws.append(image_draws)
        if self.decode_here:
            crops = crop_batch(payloads, plans, self.recipe.interpolation, torch.device("cpu"), self.size)
            return self.loaded(job, draws, crops=crops)
        return self.loaded(job, draws, payloads=_Payloads.pack(payloads), plans=plans)


def _apply_pil(image: Image.Image, plan: Plan, resample: int) -> Image.Image:
    """`plan` on a PIL image, as torchvision.transforms.functional's crop and resize do it."""
    if plan.before is not None:
        b = plan.before
        image = image.crop((b.left, b.top, b.left + b.width, b.top + b.height))
    if (image.height, image.width) != plan.resize:
        image = image.resize(plan.resize[::-1], resample)
    if plan.after is not None:
        b = plan.after
        image = image.crop((b.left, b.top, b.left + b.width, b.top + b.height))
    return image


def _apply_tensor(image: torch.Tensor, plan: Plan, interpolation) -> torch.Tensor:
    """`plan` on a uint8 (3, H, W) tensor: slices and an antialiased resize rounded back to uint8."""
    if plan.before is not None:
        b = plan.before
        image = image[:, b.top:b.top + b.height, b.left:b.left + b.width]
    if tuple(image.shape[1:]) != plan.resize:
        image = TF.resize(image, list(plan.resize), interpolation=interpolation, antialias=True)
    if plan.after is not None:
        b = plan.after
        image = image[:, b.top:b.top + b.height, b.left:b.left + b.width]
    return image


def crop_batch(payloads: list[torch.Tensor], plans: list[Plan], interpolation, device: torch.device,
               size: int) -> torch.Tensor:
    """uint8 crops (n, 3, size, size) on `device` from JPEG bytes (1-D; decoded together by
    `decode_jpegs` on `device`) and already decoded images (3, H, W)."""
    images = [p if p.dim() == 1 else host_to_device(p, device) for p in payloads]
    encoded = [i for i, p in enumerate(payloads) if p.dim() == 1]
    if encoded:
        for i, image in zip(encoded, decode_jpegs([payloads[i] for i in encoded], device)):
            images[i] = image
    return _stack([_apply_tensor(im, plan, interpolation) for im, plan in zip(images, plans)], size)


def decode_jpegs(payloads: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """JPEG bytes to uint8 RGB images (3, H, W) on `device`, in one call of torchvision.io's
    decode_jpeg: nvJPEG on CUDA, libjpeg-turbo on a CPU. nvJPEG orders its work on the current
    device's stream, so the call runs with `device` current: the stream the training step then reads
    the images on (`wrn.runtime.on_device`)."""
    with warnings.catch_warnings(), on_device(device):  # torchvision 0.29 deprecates its decoders for TorchCodec's
        warnings.simplefilter("ignore", DeprecationWarning)
        return decode_jpeg(payloads, mode=ImageReadMode.RGB, device=device)


@dataclass(frozen=True)
class _Jobs:
    """This process's batches as position ranges, made into `_Job`s when a worker asks for one (so the
    seeds of an ImageNet epoch are hashed by the workers, not all up front): a training position is
    the `order`-th (the epoch's permutation) sample, seeded by `seed_parts` + (position,); test
    positions are the samples themselves, unseeded."""

    samples: list[tuple[str, int]]
    ranges: list[range]
    order: torch.Tensor | None = None
    seed_parts: tuple[int, int] | None = None  # (seed, epoch)

    def __len__(self) -> int:
        return len(self.ranges)

    def __getitem__(self, i: int) -> _Job:
        positions = self.ranges[i]
        indices = positions if self.order is None else self.order[positions.start:positions.stop].tolist()
        seeds = (None if self.seed_parts is None else
                 tuple(derived_seed("augment", *self.seed_parts, p) for p in positions))
        return _Job(tuple(self.samples[j] for j in indices), seeds)


class _Loading(torch.utils.data.Dataset):
    def __init__(self, jobs: _Jobs, load: Callable[[_Job], _Loaded]):
        self.jobs, self.load = jobs, load

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, i: int) -> _Loaded:
        return self.load(self.jobs[i])


def _as_is(loaded: _Loaded) -> _Loaded:
    return loaded


# ------------------------------------------------------------------------------------------------
# The pipeline
# ------------------------------------------------------------------------------------------------
class ImageNetPipeline(DataPipeline):
    """ImageNet from an ImageFolder tree, this process's (`rank`-th of `cfg.world_size`) share of every
    batch, through the input path `resolved_input_pipeline` picks for `device`."""

    def __init__(self, cfg: RunConfig, data_dir: Path, device: torch.device, workers: int | None, rank: int = 0):
        if not 0 <= rank < cfg.world_size:
            raise ValueError(f"rank={rank!r}: expected 0..{cfg.world_size - 1} (world_size={cfg.world_size})")
        train, test, self.source = load_image_folders(data_dir)
        self.train_samples, self.test_samples = train.samples, test.samples
        self.train_size, self.test_size = len(train), len(test)
        self.num_classes = cfg.num_classes
        self.batch_size, self.eval_batch_size = cfg.batch_size, cfg.eval_batch_size
        self.drop_last = cfg.drop_last
        self.seed, self.device = cfg.data_seed, device
        self.rank, self.world_size = rank, cfg.world_size
        self.workers = min(8, os.cpu_count() or 1) if workers is None else workers
        self.input_pipeline = resolved_input_pipeline(cfg, device.type)
        self.recipe = recipe_for(cfg.color_augment)
        self.size = cfg.image_size
        if self.input_pipeline == "pil":
            self.load: _Loader = _PilLoader(self.recipe, self.size, cfg.hflip)
        else:
            self.load = _TensorLoader(self.recipe, self.size, cfg.hflip, decode_here=device.type == "cpu")
        self._check_size()

    def train_jobs(self, epoch: int, start_step: int = 0) -> _Jobs:
        """This process's share of steps start_step.. of `epoch`: positions step x batch_size + its
        share_bounds of the step's images, each image seeded by (seed, epoch, position)."""
        self._check_start(start_step)
        ranges = []
        for step in range(start_step, self.steps_per_epoch):
            first = step * self.batch_size
            lo, hi = self.share_bounds(min(self.batch_size, self.train_size - first))
            ranges.append(range(first + lo, first + hi))
        return _Jobs(self.train_samples, ranges, epoch_permutation(self.train_size, self.seed, epoch),
                     (self.seed, epoch))

    def test_jobs(self) -> _Jobs:
        first, last = self.test_share()
        return _Jobs(self.test_samples, [range(start, min(start + self.eval_batch_size, last))
                                         for start in range(first, last, self.eval_batch_size)])

    def _batches(self, jobs: _Jobs) -> Iterator[Batch]:
        """The jobs loaded in order by the workers, finished on the device. The DataLoader's own
        generator is a private one: its worker seed must not be drawn from the global RNG."""
        loader = torch.utils.data.DataLoader(_Loading(jobs, self.load), batch_size=None, collate_fn=_as_is,
                                             num_workers=self.workers, pin_memory=self.device.type == "cuda",
                                             generator=torch.Generator())
        with on_device(self.device):  # the pinning thread pins for the device current at this point
            batches = iter(loader)
        for loaded in batches:
            crops = loaded.crops
            if crops is None:
                crops = crop_batch(loaded.payloads.unpack(), loaded.plans, self.recipe.interpolation, self.device,
                                   self.size)
            yield (finish_batch(crops, self.device, loaded.draws),
                   loaded.labels.to(self.device, non_blocking=True))

    def train_batches(self, epoch: int, start_step: int = 0) -> Iterator[Batch]:
        """This process's share of batches start_step.. of `epoch`: (x float32 NCHW, y int64) on the device."""
        yield from self._batches(self.train_jobs(epoch, start_step))

    def test_batches(self) -> Iterator[Batch]:
        """This process's share of the test set in order, eval_batch_size at a time."""
        yield from self._batches(self.test_jobs())
