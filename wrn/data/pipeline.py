"""What every data pipeline is to training (`DataPipeline`), and the seeding that makes it stateless.

A random choice of the pipelines is drawn from a generator seeded by its purpose and its position in
training, (seed, epoch[, step or image]), never from a global RNG: so a run resumed at any step sees
exactly the data the uninterrupted run would have seen (wrn.data.tensor_pipeline for CIFAR and SVHN,
wrn.data.imagenet).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import torch

from wrn.errors import DataError

Batch = tuple[torch.Tensor, torch.Tensor]


def derived_seed(purpose: str, *parts: int) -> int:
    """A 63-bit seed from (purpose, seed, epoch, ...): well mixed, so neighbouring epochs or steps
    get unrelated streams, and independent of any global RNG state."""
    digest = hashlib.blake2b(f"wrn/{purpose}/{'/'.join(map(str, parts))}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "little") >> 1


def seeded_generator(purpose: str, *parts: int) -> torch.Generator:
    return torch.Generator().manual_seed(derived_seed(purpose, *parts))


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    return torch.randperm(n, generator=seeded_generator("shuffle", seed, epoch))


class DataPipeline:
    """What training needs from the data, whatever the dataset."""

    train_size: int
    test_size: int
    num_classes: int
    batch_size: int
    eval_batch_size: int
    drop_last: bool
    source: str  # how the data was verified: "official" (torchvision md5) or "manifest" (sha256)

    @property
    def steps_per_epoch(self) -> int:
        """Official Lua: 'skip-last' drops the last partial batch (390 steps on CIFAR at 128)."""
        full, rest = divmod(self.train_size, self.batch_size)
        return full if self.drop_last else full + (rest > 0)

    def _check_start(self, start_step: int) -> None:
        if not isinstance(start_step, int) or not 0 <= start_step <= self.steps_per_epoch:
            raise ValueError(f"start_step={start_step!r}: expected an integer in 0..{self.steps_per_epoch}")

    def _check_size(self) -> None:
        if self.steps_per_epoch == 0:
            raise DataError(f"{self.train_size} training images are fewer than batch_size={self.batch_size} "
                            "with drop_last: an epoch would have no step")

    rank: int = 0  # this process's share of each batch, of `world_size` equal shares
    world_size: int = 1

    def share_bounds(self, n: int) -> tuple[int, int]:
        """[first, last) of this process's share of a training batch of `n` images: the `rank`-th of
        `world_size` equal parts (`RunConfig` makes world_size divide the batch size; the last, partial
        batch of a run that keeps it is cut as evenly as it allows)."""
        return n * self.rank // self.world_size, n * (self.rank + 1) // self.world_size

    def test_share(self) -> tuple[int, int]:
        """[first, last) of the test images this process evaluates: a contiguous `rank`-th of them (the
        engine sums the processes' counts)."""
        return (self.test_size * self.rank // self.world_size,
                self.test_size * (self.rank + 1) // self.world_size)

    def train_batches(self, epoch: int, start_step: int = 0) -> Iterator[Batch]:
        raise NotImplementedError

    def test_batches(self) -> Iterator[Batch]:
        raise NotImplementedError
