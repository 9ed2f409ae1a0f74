"""Batch norm over the whole step's batch when the batch is split across processes (`RunConfig.sync_bn`).

On CUDA this is torch's SyncBatchNorm. torch's version refuses CPU tensors. CPU runs (the gloo
runs the tests and the dev cluster train) use `GlobalBatchNorm2d` instead: the same statistics (the
mean and biased variance of the global batch for normalising; the unbiased variance for the running
estimate) from one autograd-aware all-reduce of per-channel sums and sums of squares, taken in float64
so that the variance loses nothing to cancellation; its gradients also flow across processes. Both keep BatchNorm2d's parameters and buffers, so checkpoints load into either.
"""

from __future__ import annotations

import torch
import torch.distributed.nn.functional as dist_fn
from torch import nn


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics span every process of the default group."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        channels = x.shape[1]
        wide = x.double()  # sums of squares in float64: the variance keeps float32's precision
        count = torch.full((1,), x.numel() // channels, dtype=torch.float64, device=x.device)
        local = torch.cat([wide.sum((0, 2, 3)), (wide * wide).sum((0, 2, 3)), count])
        total = dist_fn.all_reduce(local)
        n = total[-1]
        mean64 = total[:channels] / n
        mean, var = mean64.to(x.dtype), (total[channels: 2 * channels] / n - mean64 * mean64).to(x.dtype)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * n / (n - 1), alpha=m)
        shape = (1, channels, 1, 1)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        return y * self.weight.view(shape) + self.bias.view(shape) if self.affine else y


def synchronise_batch_norm(model: nn.Module, device: torch.device) -> nn.Module:
    """`model` with every BatchNorm2d computing its statistics over all processes."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return _convert(model)


def _convert(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, GlobalBatchNorm2d):
        converted = GlobalBatchNorm2d(module.num_features, module.eps, module.momentum, module.affine,
                                      module.track_running_stats)
        converted.load_state_dict(module.state_dict())
        converted.train(module.training)
        return converted
    for name, child in module.named_children():
        setattr(module, name, _convert(child))
    return module

