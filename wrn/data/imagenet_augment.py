"""ImageNet's training and test transforms as per-image random draws, a geometric plan, and batched
pixel operations: one definition that both input paths of wrn.data.imagenet (PIL in DataLoader workers,
torchvision.io decoding on the device) execute, so that they crop and flip alike.

Two recipes, chosen by `RunConfig.color_augment`:

* `FB_RESNET` (color_augment on, ImageNet's default): fb.resnet.torch's ImageNet preprocessing, which
  the paper's WRN-50-2 was trained with (datasets/imagenet.lua and datasets/transforms.lua at
  facebook/fb.resnet.torch@985e569d468d23baeef5b952954dcdf3c61c5e73). Training: RandomSizedCrop(224)
  (area U(0.08, 1) x the image's, aspect U(3/4, 4/3), w and h rounded, swapped with p = 0.5, kept if
  it fits, at most 10 attempts, else Scale(224) + CenterCrop(224)), bicubic; ColorJitter(brightness,
  contrast, saturation 0.4) in a random order, each blending with black, the mean grey or the grey
  image by alpha = 1 + U(-0.4, 0.4); Lighting(0.1): the PCA eigenvectors scaled by alpha ~ N(0, 0.1)
  x eigenvalue added to every pixel; ColorNormalize(mean/std); HorizontalFlip(0.5). Test: Scale(256)
  (shorter side, bicubic) + CenterCrop(224); at another `image_size` both scale with it,
  Scale(round(size x 256/224)). The random numbers are drawn in the Lua's order (crop attempts, jitter
  order and factors, lighting, flip), from a generator seeded per image.
* `TORCHVISION` (color_augment off): the pipeline this suite had before fb.resnet.torch's colour
  augmentation was reproduced, torchvision's RandomResizedCrop (log-uniform aspect, central-crop
  fallback, bilinear) + RandomHorizontalFlip, Resize + CenterCrop for testing, pixel for pixel: its
  draws are torchvision's own code on a generator seeded as the global RNG was. Runs stored then keep
  their run id (experiments/store.py, LATER_FIELDS), so they must keep their data.

Deviation shared by both input paths: the crop is resized to uint8 (PIL always is; the tensor path
rounds likewise), where the Lua kept the bicubic result in float, up to half a grey level apart.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
from PIL import Image
from torchvision.transforms import InterpolationMode

from wrn.data.preprocess import IMAGENET_MEAN, IMAGENET_STD

TEST_SIDE, TEST_CROP = 256, 224  # Scale(256) before CenterCrop(224)
CROP_ATTEMPTS = 10
MIN_AREA = 0.08
ASPECTS = (3 / 4, 4 / 3)
JITTER = 0.4  # brightness, contrast and saturation alike
LIGHTING_STD = 0.1
FLIP_P = 0.5
# datasets/imagenet.lua: "computed from random subset of ImageNet training images"
PCA_EIGVAL = (0.2175, 0.0188, 0.0045)
PCA_EIGVEC = ((-0.5675, 0.7192, 0.4009),
              (-0.5808, -0.0045, -0.8140),
              (-0.5836, -0.6948, 0.4203))
GREY = (0.299, 0.587, 0.114)  # transforms.lua, grayscale
BRIGHTNESS, CONTRAST, SATURATION = 0, 1, 2  # ColorJitter's transforms, in its table's order


@dataclass(frozen=True)
class Box:
    top: int
    left: int
    height: int
    width: int


@dataclass(frozen=True)
class Plan:
    """What happens to one decoded image: crop `before` (if any), resize to `resize` (height, width;
    nothing when already that size), crop `after` (if any)."""

    before: Box | None
    resize: tuple[int, int]
    after: Box | None


@dataclass(frozen=True)
class Draws:
    """One training image's random choices. `crop` None: every crop attempt failed (fb's fallback);
    `jitter`: (transform, alpha) in the order applied; empty, and `lighting` None, without colour."""

    crop: Box | None
    flip: bool
    jitter: tuple[tuple[int, float], ...] = ()
    lighting: tuple[float, float, float] | None = None


def _uniform(g: torch.Generator, low: float = 0.0, high: float = 1.0) -> float:
    """torch.uniform(low, high) of Lua torch: low + (high - low) x U[0, 1)."""
    return low + (high - low) * torch.rand((), generator=g, dtype=torch.float64).item()


def _integer(g: torch.Generator, low: int, high: int) -> int:
    """torch.random(low, high) of Lua torch: an integer in [low, high], both included."""
    return int(torch.randint(low, high + 1, (), generator=g).item())


def _lua_round(x: float) -> int:
    """torch.round: halves away from zero (Python's round goes to even)."""
    return math.floor(x + 0.5)


class Recipe:
    """How a recipe draws, scales and centre-crops; `plan` is the one entry point."""

    name: str
    interpolation: InterpolationMode
    pil_resample: int

    def draw(self, g: torch.Generator, height: int, width: int, hflip: bool) -> Draws:
        raise NotImplementedError

    def scaled_size(self, height: int, width: int, short: int) -> tuple[int, int]:
        raise NotImplementedError

    def centre_offset(self, extent: int, size: int) -> int:
        raise NotImplementedError

    def scale_and_centre(self, height: int, width: int, short: int, size: int) -> Plan:
        """Scale the shorter side to `short`, then the central size x size."""
        h, w = self.scaled_size(height, width, short)
        return Plan(None, (h, w), Box(self.centre_offset(h, size), self.centre_offset(w, size), size, size))

    def plan(self, height: int, width: int, size: int, seed: int | None, hflip: bool
             ) -> tuple[Plan, Draws | None]:
        """A `height` x `width` image's plan to a size x size crop: the training one drawn from a
        generator seeded by `seed`, or the test one (`seed` None, no draws)."""
        if seed is None:
            return self.scale_and_centre(height, width, round(size * TEST_SIDE / TEST_CROP), size), None
        draws = self.draw(torch.Generator().manual_seed(seed), height, width, hflip)
        if draws.crop is None:
            return self.scale_and_centre(height, width, size, size), draws
        return Plan(draws.crop, (size, size), None), draws


class FbResnetRecipe(Recipe):
    """datasets/transforms.lua@985e569: RandomSizedCrop, ColorJitter, Lighting, HorizontalFlip; Scale
    and CenterCrop."""

    name = "fb.resnet.torch"
    interpolation = InterpolationMode.BICUBIC
    pil_resample = Image.BICUBIC

    def draw(self, g: torch.Generator, height: int, width: int, hflip: bool) -> Draws:
        crop = None
        for _ in range(CROP_ATTEMPTS):
            target = _uniform(g, MIN_AREA, 1.0) * height * width
            aspect = _uniform(g, *ASPECTS)
            w, h = _lua_round(math.sqrt(target * aspect)), _lua_round(math.sqrt(target / aspect))
            if _uniform(g) < 0.5:
                w, h = h, w
            if h <= height and w <= width:
                top = _integer(g, 0, height - h)
                crop = Box(top, _integer(g, 0, width - w), h, w)
                break
        order = torch.randperm(3, generator=g).tolist()
        jitter = tuple((op, 1.0 + _uniform(g, -JITTER, JITTER)) for op in order)
        lighting = (torch.randn(3, generator=g, dtype=torch.float64) * LIGHTING_STD).tolist()
        return Draws(crop, hflip and _uniform(g) < FLIP_P, jitter, tuple(lighting))

    def scaled_size(self, height: int, width: int, short: int) -> tuple[int, int]:
        """Scale(short): unchanged when the shorter side is `short` already, else image.scale's
        truncated h/w x short (torch/image's scale allocates a tensor of that size)."""
        if min(height, width) == short:
            return height, width
        if width < height:
            return int(height / width * short), short
        return short, int(width / height * short)

    def centre_offset(self, extent: int, size: int) -> int:
        return math.ceil((extent - size) / 2)


class TorchvisionRecipe(Recipe):
    """torchvision.transforms' RandomResizedCrop + RandomHorizontalFlip; Resize + CenterCrop."""

    name = "torchvision"
    interpolation = InterpolationMode.BILINEAR
    pil_resample = Image.BILINEAR

    def draw(self, g: torch.Generator, height: int, width: int, hflip: bool) -> Draws:
        """RandomResizedCrop.get_params (torchvision 0.29) and RandomHorizontalFlip, line for line,
        on `g` in place of the global RNG."""
        area = height * width
        log_ratio = torch.log(torch.tensor(ASPECTS))
        crop = None
        for _ in range(CROP_ATTEMPTS):
            target_area = area * torch.empty(1).uniform_(MIN_AREA, 1.0, generator=g).item()
            aspect_ratio = torch.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1], generator=g)).item()
            w = int(round(math.sqrt(target_area * aspect_ratio)))
            h = int(round(math.sqrt(target_area / aspect_ratio)))
            if 0 < w <= width and 0 < h <= height:
                i = torch.randint(0, height - h + 1, size=(1,), generator=g).item()
                j = torch.randint(0, width - w + 1, size=(1,), generator=g).item()
                crop = Box(i, j, h, w)
                break
        if crop is None:  # torchvision's fallback: the central crop of the nearest allowed aspect
            in_ratio = float(width) / float(height)
            if in_ratio < min(ASPECTS):
                w, h = width, int(round(width / min(ASPECTS)))
            elif in_ratio > max(ASPECTS):
                w, h = int(round(height * max(ASPECTS))), height
            else:
                w, h = width, height
            crop = Box((height - h) // 2, (width - w) // 2, h, w)
        return Draws(crop, hflip and bool(torch.rand(1, generator=g) < FLIP_P))

    def scaled_size(self, height: int, width: int, short: int) -> tuple[int, int]:
        """torchvision.transforms.functional.resize with an int: the longer side int(short x long/shorter)."""
        if width <= height:
            return int(short * height / width), short
        return short, int(short * width / height)

    def centre_offset(self, extent: int, size: int) -> int:
        return int(round((extent - size) / 2.0))


FB_RESNET = FbResnetRecipe()
TORCHVISION = TorchvisionRecipe()


def recipe_for(color_augment: bool) -> Recipe:
    return FB_RESNET if color_augment else TORCHVISION


# ------------------------------------------------------------------------------------------------
# Pixels: a batch of uint8 crops to normalised floats, batched on the device
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BatchDraws:
    """A batch's per-image draws as tensors: flips (n,) bool; for colour, the jitter transforms (n, 3)
    in the order applied, their alphas (n, 3) and the lighting's RGB shift (n, 3), all float64."""

    flips: torch.Tensor
    jitter_ops: torch.Tensor | None = None
    jitter_alphas: torch.Tensor | None = None
    lighting: torch.Tensor | None = None

    @classmethod
    def of(cls, draws: list[Draws]) -> BatchDraws:
        flips = torch.tensor([d.flip for d in draws], dtype=torch.bool)
        if not draws or draws[0].lighting is None:
            return cls(flips)
        return cls(flips, torch.tensor([[op for op, _ in d.jitter] for d in draws], dtype=torch.int64),
                   torch.tensor([[alpha for _, alpha in d.jitter] for d in draws], dtype=torch.float64),
                   lighting_shift(torch.tensor([d.lighting for d in draws], dtype=torch.float64)))

    def fields(self) -> tuple[torch.Tensor | None, ...]:
        return self.flips, self.jitter_ops, self.jitter_alphas, self.lighting

    def pin_memory(self) -> BatchDraws:
        return BatchDraws(*(None if t is None else t.pin_memory() for t in self.fields()))

    def to(self, device: torch.device) -> BatchDraws:
        """On `device`, asynchronously from pinned memory (no wait for the device's queue)."""
        return BatchDraws(*(None if t is None else t.to(device, non_blocking=True) for t in self.fields()))


def lighting_shift(alphas: torch.Tensor) -> torch.Tensor:
    """fb's Lighting: per image (alphas (n, 3)), rgb_i = sum_j eigvec[i][j] x alpha_j x eigval_j (n, 3)."""
    eigvec = torch.tensor(PCA_EIGVEC, dtype=alphas.dtype)
    eigval = torch.tensor(PCA_EIGVAL, dtype=alphas.dtype)
    return (eigvec[None] * (alphas * eigval)[:, None, :]).sum(2)


@functools.cache
def _constants(device: torch.device) -> dict[str, torch.Tensor]:
    """The pixel operations' constants on `device`, made once: a tensor built from Python numbers on a
    GPU is a copy that waits for everything queued there, which per batch would stall the training."""
    return {"mean": torch.as_tensor(IMAGENET_MEAN, dtype=torch.float32, device=device),
            "std": torch.as_tensor(IMAGENET_STD, dtype=torch.float32, device=device),
            "eye": torch.eye(3, dtype=torch.float64, device=device),
            "grey": torch.tensor(GREY, dtype=torch.float64, device=device)}


def _per_image(values: torch.Tensor) -> torch.Tensor:
    return values.view(-1, 1, 1, 1)


def colour_affine(means: torch.Tensor, draws: BatchDraws) -> tuple[torch.Tensor, torch.Tensor]:
    """fb's ColorJitter then Lighting as one affine map per image, x -> A x + b on every pixel's RGB
    (A (n, 3, 3), b (n, 3), float64), from the images' channel means (n, 3) on the 0-1 scale and
    `draws` on their device.

    Each of the Lua's steps is affine in the pixel: brightness alpha x; saturation alpha x + (1 - alpha)
    grey(x), grey a fixed 1x3 row; contrast alpha x + (1 - alpha) mean(grey(x)), where the mean grey is
    grey(mean(x)), known from the channel means carried through the steps before it; lighting x + rgb.
    So the composition is exact (up to float rounding) and costs two passes over the pixels instead
    of one per elementary operation."""
    constants = _constants(means.device)
    n = len(means)
    eye, grey = constants["eye"].expand(n, 3, 3), constants["grey"]
    a, b, mu = eye, torch.zeros_like(means), means
    for slot in range(3):
        op, alpha = draws.jitter_ops[:, slot].view(n, 1, 1), draws.jitter_alphas[:, slot].view(n, 1, 1)
        step = alpha * eye + torch.where(op == SATURATION, (1 - alpha) * grey.expand(n, 3, 3), 0.0)
        shift = torch.where(op.view(n, 1) == CONTRAST, (1 - alpha.view(n, 1)) * (mu @ grey)[:, None], 0.0)
        shift = shift.expand(n, 3)
        a, b = step @ a, (step @ b[:, :, None])[:, :, 0] + shift
        mu = (step @ mu[:, :, None])[:, :, 0] + shift
    return a, b + draws.lighting


def finish_batch(crops: torch.Tensor, device: torch.device, draws: BatchDraws | None = None) -> torch.Tensor:
    """uint8 crops (n, 3, S, S) -> float32 on `device`: the flips (on the uint8 crops: a flip commutes
    with every step after it), then x / 255 and (x - mean) / std, torchvision's ToTensor + Normalize op
    for op, or with colour augmentation the jitter, lighting and mean/std folded into one affine map per
    image (`colour_affine`). Nothing here waits for the device."""
    constants = _constants(device)
    mean, std = constants["mean"], constants["std"]
    crops = crops.to(device, non_blocking=True)
    if draws is not None:
        draws = draws.to(device)
        crops = torch.where(_per_image(draws.flips), crops.flip(3), crops)
    x = crops.to(torch.float32)
    if draws is None or draws.lighting is None:
        return (x.div(255) - mean.view(-1, 1, 1)) / std.view(-1, 1, 1)
    a, b = colour_affine(x.mean((2, 3)).double() / 255, draws)
    a = (a / (255 * std.view(1, 3, 1))).to(torch.float32)  # x / 255 before, (y - mean) / std after
    b = ((b - mean) / std).to(torch.float32)
    n, _, h, w = x.shape
    return torch.baddbmm(b.view(n, 3, 1), a, x.view(n, 3, h * w)).view(n, 3, h, w)
