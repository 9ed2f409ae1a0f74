"""The data pipeline training sees, `make_pipeline(cfg, data_dir, device)`, and the one it builds for
CIFAR and SVHN, `TensorPipeline` (ImageNet's is wrn.data.imagenet's).

CIFAR and SVHN live whole on the training device (uint8, or float32 once ZCA-whitened); a batch is
an index_select of a shuffled permutation, then the batched crop/flip of wrn.data.augment and the
per-batch normalisation. No DataLoader, no workers, no per-image Python, as in fast CIFAR trainers
such as KellerJordan/cifar10-airbench.

Every random choice is a pure function of the config's seed and the position in training: the
epoch's permutation of (seed, epoch), each step's crops and flips of (seed, epoch, step). Nothing
carries over from one batch to the next, so a run resumed at any step sees exactly the batches the
uninterrupted run would have seen, and `train_batches(e, start_step=s)` is the tail of
`train_batches(e)`. The generators are CPU generators, so batches are also the same on any device.

ImageNet cannot be device-resident; its pipelines (wrn.data.imagenet) have the same interface and the
same stateless seeding (each image's transform is seeded by its position in the epoch).

Under data parallelism (`RunConfig.world_size` processes) every process draws the same step, the
`batch_size` images of (seed, epoch, step) with their crops and flips, and trains on its `rank`-th
equal share of it: what a process sees is a function of (seed, epoch, step, rank), and the union of
the shares is exactly the batch a single process would train on, so a run's data does not depend on
how many processes share it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from wrn.config import RunConfig
from wrn.data.augment import CropFlip
from wrn.data.datasets import load_arrays
from wrn.data.layout import data_cache_dir
from wrn.data.pipeline import Batch, DataPipeline, epoch_permutation, seeded_generator
from wrn.data.preprocess import make_normalizer, pixel_mean, subtract_pixel_mean, zca_transform, zca_whiten
from wrn.runtime import host_to_device


class TensorPipeline(DataPipeline):
    """A dataset held whole on `device` (CIFAR, SVHN)."""

    def __init__(self, cfg: RunConfig, train: Batch, test: Batch, num_classes: int,
                 normalize: Callable[[torch.Tensor], torch.Tensor] | None, source: str,
                 device: torch.device, rank: int = 0):
        (self.train_x, self.train_y), (self.test_x, self.test_y) = train, test
        self.train_size, self.test_size = len(self.train_x), len(self.test_x)
        self.num_classes, self.source, self.device = num_classes, source, device
        self.batch_size, self.eval_batch_size = cfg.batch_size, cfg.eval_batch_size
        self.drop_last = cfg.drop_last
        self.seed = cfg.data_seed  # the run's seed, or one shared by every run (`RunConfig.data_order`)
        self.rank, self.world_size = rank, cfg.world_size
        self.normalize = normalize
        _, _, h, w = self.train_x.shape
        augment = CropFlip(h, w, cfg.crop_padding, cfg.pad_mode, cfg.hflip, device, cfg.crop_draw, cfg.flip_draw)
        self.augment = None if augment.is_identity else augment
        self._check_size()

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.normalize is None else self.normalize(x)

    def train_batches(self, epoch: int, start_step: int = 0) -> Iterator[Batch]:
        """Batches start_step.. of `epoch`, this process's share of each: (x float32 NCHW, y int64) on
        the device."""
        self._check_start(start_step)
        perm = host_to_device(epoch_permutation(self.train_size, self.seed, epoch), self.device)
        for step in range(start_step, self.steps_per_epoch):
            batch = perm[step * self.batch_size:(step + 1) * self.batch_size]
            share = slice(*self.share_bounds(len(batch)))
            idx = batch[share]
            x, y = self.train_x.index_select(0, idx), self.train_y.index_select(0, idx)
            if self.augment is None:
                x = self._prepare(x)
            else:  # the whole batch's draws, so that each share gets its images' own crops and flips
                dy, dx, flips = self.augment.draw(len(batch), seeded_generator("augment", self.seed, epoch, step))
                x = self.augment.apply(x, dy[share], dx[share], flips[share], self.normalize)
            yield x, y

    def test_batches(self) -> Iterator[Batch]:
        """This process's share of the test set (all of it for one process) in order, eval_batch_size
        at a time, the last partial batch included."""
        first, last = self.test_share()
        for start in range(first, last, self.eval_batch_size):
            end = min(start + self.eval_batch_size, last)
            yield self._prepare(self.test_x[start:end]).to(torch.float32), self.test_y[start:end]


def make_pipeline(cfg: RunConfig, data_dir: str | Path, device: torch.device | str,
                  download: bool = True, *, workers: int | None = None, rank: int = 0) -> DataPipeline:
    """The pipeline for resolved `cfg` with its data under `data_dir` on `device`, yielding process
    `rank`'s share of every training batch (of `cfg.world_size` shares).

    `download` lets torchvision fetch a missing official CIFAR/SVHN set; `workers` is the ImageNet
    DataLoader's worker count (default min(8, CPUs); CIFAR/SVHN use none)."""
    if cfg.preprocessing is None or cfg.batch_size is None or cfg.crop_padding is None:
        raise ValueError("make_pipeline needs a resolved RunConfig (wrn.config.resolve)")
    device, data_dir = torch.device(device), Path(data_dir)
    if cfg.dataset == "imagenet":
        from wrn.data.imagenet import ImageNetPipeline  # deferred: CIFAR and SVHN runs need none of it

        return ImageNetPipeline(cfg, data_dir, device, workers, rank=rank)
    data = load_arrays(cfg.dataset, data_dir, download=download)
    if cfg.preprocessing == "zca":
        mean, p = zca_transform(data.train_x, data_cache_dir(data_dir), device)
        train_x, test_x = zca_whiten(data.train_x, mean, p), zca_whiten(data.test_x, mean, p)
    elif cfg.preprocessing == "pixelmean":
        image = pixel_mean(data.train_x)
        train_x, test_x = subtract_pixel_mean(data.train_x, image, device), subtract_pixel_mean(data.test_x, image, device)
    else:
        train_x, test_x = data.train_x.to(device), data.test_x.to(device)
    normalize = make_normalizer(cfg.preprocessing, cfg.norm_stats, data.train_x, device)
    return TensorPipeline(cfg, (train_x, data.train_y.to(device)), (test_x, data.test_y.to(device)),
                          data.num_classes, normalize, data.source, device, rank)
