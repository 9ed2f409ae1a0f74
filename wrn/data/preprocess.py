"""Input preprocessing: per-batch normalisation constants, and the offline ZCA whitening the paper's
CIFAR runs used.

* meanstd: (x - mean) / std per channel on the 0-255 scale. The official code's constants are
  CIFAR-10 statistics and it uses them for CIFAR-100 too (docs/paper.md, "Recipe"); norm_stats="dataset"
  uses the training set's own statistics instead.
* div255: SVHN's only preprocessing, x / 255.
* pixelmean: He et al.'s "per-pixel mean subtracted" (arXiv:1512.03385 §4.2), the training set's mean
  image taken from every image on the 0-255 scale (Caffe's, which scales nothing), before the padding
  and crop, so zero padding is the mean's colour.
* zca: pylearn2's make_cifar10_gcn_whitened.py, which the official README points to: global contrast
  normalisation (per image: subtract the mean over its 3072 values, scale to L2 norm 55), then ZCA
  fitted on the training set (covariance + 0.1 I, P = V diag(1/sqrt(eig)) V^T, x -> (x - mean) P).
  The Lua code trains on the whitened floats as they are (pad/crop/flip on whitened images). The fit
  runs in float64 (pylearn2: Theano floatX) and is cached on disk keyed by the training data's
  sha256, so it happens once per dataset, not once per run.

meanstd and div255 keep the stored images uint8 and normalise each batch; ZCA and pixelmean store
float32, transformed once.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from wrn.files import atomic_write

OFFICIAL_MEAN = (125.3, 123.0, 113.9)  # 0-255 scale; official Lua and PyTorch code
OFFICIAL_STD = (63.0, 62.1, 66.7)
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # 0-1 scale; fb.resnet.torch / torchvision
IMAGENET_STD = (0.229, 0.224, 0.225)
GCN_SCALE = 55.0  # pylearn2 CIFAR10(gcn=55.)
GCN_MIN_DIVISOR = 1e-8  # pylearn2 global_contrast_normalize default
ZCA_FILTER_BIAS = 0.1  # pylearn2 ZCA default
ZCA_CACHE_VERSION = "pylearn2-gcn55-zca0.1/v1"


@dataclass(frozen=True)
class Normalizer:
    """x -> (x - mean) / std per channel, applied to each batch on its device."""

    mean: torch.Tensor  # (1, C, 1, 1) float32
    std: torch.Tensor

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(torch.float32, copy=True).sub_(self.mean).div_(self.std)  # never in place on x

    @classmethod
    def of(cls, mean, std, device: torch.device | str = "cpu") -> Normalizer:
        as_t = lambda v: torch.tensor(v, dtype=torch.float32, device=device).view(1, -1, 1, 1)  # noqa: E731
        return cls(as_t(mean), as_t(std))


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of uint8 images (N, C, H, W), on their 0-255 scale."""
    x = images.transpose(0, 1).reshape(images.shape[1], -1).to(torch.float64)
    return tuple(x.mean(1).tolist()), tuple(x.std(1, correction=0).tolist())


def make_normalizer(preprocessing: str, norm_stats: str, train_x: torch.Tensor,
                    device: torch.device | str) -> Normalizer | None:
    """The per-batch normalisation for `preprocessing`; None for ZCA and pixelmean, whose stored data
    is transformed once."""
    if preprocessing == "meanstd":
        mean, std = (OFFICIAL_MEAN, OFFICIAL_STD) if norm_stats == "official" else channel_stats(train_x)
        return Normalizer.of(mean, std, device)
    if preprocessing == "div255":
        return Normalizer.of((0.0,) * 3, (255.0,) * 3, device)
    if preprocessing in ("zca", "pixelmean"):
        return None
    raise ValueError(f"preprocessing={preprocessing!r}: allowed: meanstd, zca, div255, pixelmean")


def pixel_mean(train_x: torch.Tensor) -> torch.Tensor:
    """The mean image (C, H, W) of uint8 training images (N, C, H, W), float32 on the 0-255 scale,
    summed in float64."""
    return train_x.to(torch.float64).mean(0).to(torch.float32)


def subtract_pixel_mean(images: torch.Tensor, mean: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """uint8 images less the mean image, float32 on `device`."""
    return images.to(device).to(torch.float32).sub_(mean.to(device))


# ------------------------------------------------------------------------------------------------
# GCN + ZCA (pylearn2 semantics)
# ------------------------------------------------------------------------------------------------
def global_contrast_normalize(x: torch.Tensor, scale: float = GCN_SCALE,
                              min_divisor: float = GCN_MIN_DIVISOR) -> torch.Tensor:
    """pylearn2 `global_contrast_normalize(X, scale, subtract_mean=True, use_std=False,
    sqrt_bias=0)`: per row, subtract its mean and divide by its L2 norm / scale (rows whose divisor
    is below `min_divisor` are only centred)."""
    x = x - x.mean(dim=1, keepdim=True)
    norms = x.square().sum(dim=1, keepdim=True).sqrt() / scale
    return x / torch.where(norms < min_divisor, torch.ones_like(norms), norms)


def fit_zca(x: torch.Tensor, filter_bias: float = ZCA_FILTER_BIAS) -> tuple[torch.Tensor, torch.Tensor]:
    """pylearn2 `ZCA.fit`: mean over rows, C = Xc^T Xc / n + filter_bias I, P = V diag(1/sqrt(eig))
    V^T. Returns (mean, P) for `apply_zca`.

    With fewer rows than features (small prepared sets) the same P comes from the n x n Gram matrix
    instead of a d x d eigendecomposition (tens of seconds on a CPU for d = 3072): with Xc = U S V^T,
    C = V (S^2/n) V^T + b I, so P = I/sqrt(b) + V [1/sqrt(S^2/n + b) - 1/sqrt(b)] V^T, where
    directions with S ~ 0 have a zero bracket and can be left out."""
    n, d = x.shape
    mean = x.mean(dim=0)
    xc = x - mean
    eye = torch.eye(d, dtype=x.dtype, device=x.device)
    if n < d:
        sq, u = torch.linalg.eigh(xc @ xc.T)  # S^2 and U
        keep = sq > sq.max().clamp_min(1e-300) * n * torch.finfo(x.dtype).eps
        v = (xc.T @ u[:, keep]) * sq[keep].rsqrt()  # d x r, orthonormal columns
        gain = (sq[keep] / n + filter_bias).rsqrt() - filter_bias ** -0.5
        p = eye * filter_bias ** -0.5 + (v * gain) @ v.T
    else:
        eigs, eigv = torch.linalg.eigh(xc.T @ xc / n + filter_bias * eye)
        p = (eigv * eigs.rsqrt()) @ eigv.T
    return mean, p


def apply_zca(x: torch.Tensor, mean: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    return (x - mean) @ p


def data_sha256(images: torch.Tensor) -> str:
    """sha256 of a tensor's shape, dtype and bytes: the cache key of what was fitted on it."""
    arr = images.detach().cpu().contiguous().numpy()
    digest = hashlib.sha256(f"{tuple(arr.shape)}|{arr.dtype}|".encode())
    digest.update(memoryview(arr).cast("B"))
    return digest.hexdigest()


def zca_cache_path(cache_dir: Path, train_x: torch.Tensor) -> Path:
    key = hashlib.sha256(f"{ZCA_CACHE_VERSION}|{data_sha256(train_x)}".encode()).hexdigest()
    return Path(cache_dir) / f"zca-{key[:16]}.pt"


def _load_cached(path: Path, d: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        mean, p = state["mean"], state["P"]
        if state["version"] != ZCA_CACHE_VERSION or mean.shape != (d,) or p.shape != (d, d):
            raise ValueError("stale shape or version")
        return mean, p
    except Exception as exc:  # noqa: BLE001 - an unreadable cache is refitted, never trusted
        warnings.warn(f"{path}: ignoring unreadable ZCA cache ({exc}); refitting", stacklevel=3)
        return None


def zca_transform(train_x: torch.Tensor, cache_dir: Path, device: torch.device | str
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, P) of GCN+ZCA fitted on uint8 `train_x`, from `cache_dir` when fitted before."""
    d = train_x[0].numel()
    path = zca_cache_path(cache_dir, train_x)
    if path.is_file() and (cached := _load_cached(path, d)) is not None:
        return cached[0].to(device), cached[1].to(device)
    flat = train_x.to(device).reshape(len(train_x), d).to(torch.float64)
    mean, p = fit_zca(global_contrast_normalize(flat))
    state = {"version": ZCA_CACHE_VERSION, "mean": mean.cpu(), "P": p.cpu(), "n_train": len(train_x)}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda handle: torch.save(state, handle), binary=True)
    except OSError as exc:  # read-only data directories still train, they just refit next time
        warnings.warn(f"could not cache the ZCA fit at {path} ({exc}); it will be refitted next run",
                      stacklevel=2)
    return mean, p


def zca_whiten(images: torch.Tensor, mean: torch.Tensor, p: torch.Tensor,
               chunk: int = 10_000) -> torch.Tensor:
    """GCN then ZCA of uint8 images (N, C, H, W) on `p`'s device; float32, same shape."""
    out = torch.empty(images.shape, dtype=torch.float32, device=p.device)
    for start in range(0, len(images), chunk):
        part = images[start:start + chunk].to(p.device).reshape(-1, p.shape[0]).to(torch.float64)
        out[start:start + chunk] = apply_zca(global_contrast_normalize(part), mean, p).view(
            -1, *images.shape[1:]).to(torch.float32)
    return out
