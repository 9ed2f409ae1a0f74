"""CIFAR's augmentation, batched on the training device: pad by `padding` pixels (reflection as in
the official scripts, or zeros), take a random crop of the original size (offsets uniform over
0..2*padding in each axis), flip horizontally.

The draws come in the two forms the official code had (docs/recipes.md): per image (a crop offset
and a flip with p = 0.5 for each image; torchnet transforms, since commit 730d723 of 2016-07-13), or
as `augmentation.lua` drew them before (commit 0a4c364, the code of the v1 paper and the ZCA tables):
one crop offset for the whole minibatch (`nn.RandomCrop`) and exactly half of the minibatch flipped
(`nn.BatchFlip`: `randperm(bs):le(bs/2)`), the flip applied before the crop.

Pad, crop and flip are all pure re-indexing, so each of the (2p+1)^2 * 2 possible outcomes is a
fixed map from output pixel to source pixel of the *unpadded* image. The maps are built once; a
batch is then one `gather` of the stored images (uint8 for meanstd/div255) through each image's
map, with no padded copy, no per-image work and no DataLoader. Zero padding means zero *after*
normalisation (the Lua code normalises before it pads), so it is applied as a mask after the
normalisation step, which the caller passes in.

Randomness comes only from the generator the caller passes (a CPU generator, seeded per step by
the pipeline), so the same (seed, epoch, step) gives the same crops and flips on any device.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from wrn.config import CROP_DRAWS, FLIP_DRAWS, PAD_MODES
from wrn.runtime import host_to_device


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    """Source index of padded position `index` (in unpadded coordinates) under reflection
    padding without edge repeat (torch "reflect", Torch7 SpatialReflectionPadding)."""
    index = index.abs()
    return torch.where(index >= size, 2 * (size - 1) - index, index)


class CropFlip:
    """Random pad-crop-flip of (B, C, H, W) batches of a fixed image size."""

    def __init__(self, height: int, width: int, padding: int, pad_mode: str = "reflect",
                 hflip: bool = True, device: torch.device | str = "cpu", crop_draw: str = "per_image",
                 flip_draw: str = "per_image"):
        if pad_mode not in PAD_MODES:
            raise ValueError(f"pad_mode={pad_mode!r}: allowed: {', '.join(PAD_MODES)}")
        if crop_draw not in CROP_DRAWS or flip_draw not in FLIP_DRAWS:
            raise ValueError(f"crop_draw={crop_draw!r}, flip_draw={flip_draw!r}: allowed: {', '.join(CROP_DRAWS)}; "
                             f"{', '.join(FLIP_DRAWS)}")
        if padding < 0 or (pad_mode == "reflect" and padding >= min(height, width)):
            raise ValueError(f"crop_padding={padding}: reflection needs 0 <= padding < image size")
        self.height, self.width, self.padding = height, width, padding
        self.pad_mode, self.hflip, self.device = pad_mode, hflip, torch.device(device)
        self.crop_draw, self.flip_draw = crop_draw, flip_draw
        span, flips = 2 * padding + 1, 2 if hflip else 1
        # Outcome k = (dy * span + dx) * flips + flip; row k of `maps` sends output pixels to sources.
        dy, dx, flip = torch.meshgrid(torch.arange(span), torch.arange(span), torch.arange(flips),
                                      indexing="ij")
        dy, dx, flip = dy.reshape(-1, 1, 1), dx.reshape(-1, 1, 1), flip.reshape(-1, 1, 1).bool()
        rows = torch.arange(height).view(1, -1, 1) + dy - padding  # (K, H, 1) in unpadded coordinates
        out_cols = torch.arange(width).view(1, 1, -1)
        cols = torch.where(flip, width - 1 - out_cols, out_cols) + dx - padding  # (K, 1, W)
        if pad_mode == "reflect":
            self.maps = (_reflect(rows, height) * width + _reflect(cols, width)).reshape(len(dy), -1)
            self.masks = None
        else:
            inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
            self.maps = (rows.clamp(0, height - 1) * width + cols.clamp(0, width - 1)).reshape(len(dy), -1)
            self.masks = inside.reshape(len(dy), 1, height, width).to(device=device, dtype=torch.float32)
        self.maps = self.maps.to(self.device)

    @property
    def is_identity(self) -> bool:
        return self.padding == 0 and not self.hflip

    def draw(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per image: vertical and horizontal crop offsets in 0..2*padding and a flip flag, as `apply`
        takes them (crop, then flip)."""
        span = 2 * self.padding + 1
        per_batch = self.crop_draw == "per_batch"
        offsets = torch.randint(0, span, (2, 1 if per_batch else n), generator=generator).expand(2, n)
        if not self.hflip:
            flips = torch.zeros(n, dtype=torch.bool)
        elif self.flip_draw == "half_batch":
            flips = torch.randperm(n, generator=generator) < n // 2
        else:
            flips = torch.rand(n, generator=generator) < 0.5
        dy, dx = offsets[0].clone(), offsets[1].clone()
        if per_batch:  # augmentation.lua flips first: a flipped image is cut at the mirrored offset
            dx = torch.where(flips, 2 * self.padding - dx, dx)
        return dy, dx, flips

    def apply(self, images: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flips: torch.Tensor,
              normalize: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """Crop at (dy, dx) of the padded image, then flip where `flips`; float32 out. `normalize`
        runs between the re-indexing and the zero-padding mask. Same as F.pad + slicing + flip,
        image by image."""
        n, c, h, w = images.shape
        if (h, w) != (self.height, self.width):
            raise ValueError(f"images are {h}x{w}, this augmentation was built for "
                             f"{self.height}x{self.width}")
        outcome = (dy * (2 * self.padding + 1) + dx) * (2 if self.hflip else 1) + flips.long()
        outcome = host_to_device(outcome, self.device)
        src = self.maps.index_select(0, outcome).unsqueeze(1).expand(n, c, h * w)
        out = images.reshape(n, c, h * w).gather(2, src).view(n, c, h, w)  # a fresh tensor
        out = out.to(torch.float32) if normalize is None else normalize(out)
        if self.masks is not None:
            out.mul_(self.masks.index_select(0, outcome))
        return out

    def __call__(self, images: torch.Tensor, generator: torch.Generator,
                 normalize: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        return self.apply(images, *self.draw(len(images), generator), normalize=normalize)
