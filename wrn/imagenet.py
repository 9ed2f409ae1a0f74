"""ImageNet's input pipelines: JPEG files in, training and test batches on the device out.

fb.resnet.torch's ImageNet preprocessing (datasets/imagenet.lua), which the paper's WRN-50-2 was trained
with: RandomSizedCrop(224), ColorJitter and PCA lighting, mean/std, horizontal flip for training;
Scale(256) + CenterCrop(224) for testing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import torch
import torchvision.transforms as T

from wrn.config import RunConfig
from wrn.pipeline import Batch, DataPipeline, derived_seed, epoch_permutation
from wrn.datasets import load_image_folders
from wrn.preprocess import IMAGENET_MEAN, IMAGENET_STD


class _SeededPositions(torch.utils.data.Dataset):
    """Position i of an epoch -> the i-th image of the epoch's permutation, its random transform
    seeded by (seed, epoch, i), so DataLoader workers need no RNG state to reproduce a resume."""

    def __init__(self, folder, perm: torch.Tensor, seed: int, epoch: int):
        self.folder, self.perm, self.seed, self.epoch = folder, perm, seed, epoch

    def __len__(self) -> int:
        return len(self.perm)

    def __getitem__(self, position: int):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derived_seed("augment", self.seed, self.epoch, position))
            return self.folder[int(self.perm[position])]


class ImageNetPipeline(DataPipeline):
    """ImageNet through ImageFolder and a DataLoader: RandomResizedCrop(image_size) + flip +
    ImageNet mean/std for training; Resize(image_size * 256/224) + CenterCrop for testing.
    fb.resnet.torch also used colour jitter and PCA lighting noise; they are not reproduced."""

    def __init__(self, cfg: RunConfig, data_dir: Path, device: torch.device, workers: int | None, rank: int = 0):
        size = cfg.image_size
        norm = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
        train_tf = T.Compose([T.RandomResizedCrop(size), *([T.RandomHorizontalFlip()] if cfg.hflip else []),
                              T.ToTensor(), norm])
        test_tf = T.Compose([T.Resize(round(size * 256 / 224)), T.CenterCrop(size), T.ToTensor(), norm])
        self.train_set, self.test_set, self.source = load_image_folders(data_dir, train_tf, test_tf)
        self.train_size, self.test_size = len(self.train_set), len(self.test_set)
        self.num_classes = cfg.num_classes
        self.batch_size, self.eval_batch_size = cfg.batch_size, cfg.eval_batch_size
        self.drop_last = cfg.drop_last
        self.seed, self.device = cfg.seed, device
        self.workers = min(8, os.cpu_count() or 1) if workers is None else workers
        self._check_size()

    def _loader(self, dataset, batch_size: int, positions: range | None = None):
        return torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=positions,
                                           num_workers=self.workers, pin_memory=self.device.type == "cuda")

    def _to_device(self, batch) -> Batch:
        x, y = batch
        return x.to(self.device, non_blocking=True), y.to(self.device, dtype=torch.int64, non_blocking=True)

    def train_batches(self, epoch: int, start_step: int = 0) -> Iterator[Batch]:
        self._check_start(start_step)
        view = _SeededPositions(self.train_set, epoch_permutation(self.train_size, self.seed, epoch),
                                self.seed, epoch)
        end = min(self.steps_per_epoch * self.batch_size, self.train_size)
        positions = range(start_step * self.batch_size, end)
        for batch in self._loader(view, self.batch_size, positions):
            yield self._to_device(batch)

    def test_batches(self) -> Iterator[Batch]:
        for batch in self._loader(self.test_set, self.eval_batch_size):
            yield self._to_device(batch)
