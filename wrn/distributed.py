"""Data-parallel training across processes: who this process is, and the few collectives the engine needs.

A distributed run is `RunConfig.world_size` processes, one per GPU (torch DistributedDataParallel over
NCCL on GPUs, gloo on CPUs), started with torch's env:// variables: MASTER_ADDR, MASTER_PORT, RANK,
WORLD_SIZE and LOCAL_RANK, which torchrun, the local executor and
`submitit.helpers.TorchDistributedEnvironment().export()` all set. Besides the training collectives
(gradients, and batch norm under `sync_bn`), the processes talk over a second, gloo group on the CPU:
whether to stop at this step, the epoch's sums, the RNG states for rank 0's checkpoint. On a GPU those
never wait for the device, so the step keeps its one-way flow to the GPU.

Every collective is bounded by `collective_timeout_s()` (WRN_COLLECTIVE_TIMEOUT_S, default 600 s): a
process that dies makes the others fail after that long instead of waiting for ever.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from wrn.errors import UserError

TIMEOUT_VARIABLE = "WRN_COLLECTIVE_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 600.0
ENV_VARIABLES = ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK")


class DistributedSetupError(UserError):
    """The process's distributed environment does not match the run it was asked to train."""


@dataclass(frozen=True)
class Processes:
    """This process's place in its run: rank `rank` of `world_size`, `local_rank` on its node, and the
    backend of the training collectives ("nccl", "gloo", or "none" for a single process)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = "none"

    @property
    def is_writer(self) -> bool:
        """Rank 0 alone writes the run's files (checkpoints, metrics, results)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


SINGLE = Processes()
_control: Any = None  # the gloo group of the CPU-side collectives, once joined


def environment_world_size() -> int:
    """WORLD_SIZE of the environment (1 when unset): how many processes this one was started among."""
    value = os.environ.get("WORLD_SIZE", "1")
    try:
        return int(value)
    except ValueError:
        raise DistributedSetupError(f"WORLD_SIZE={value!r}: expected an integer number of processes") from None


def collective_timeout_s() -> float:
    value = os.environ.get(TIMEOUT_VARIABLE, str(DEFAULT_TIMEOUT_S))
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise DistributedSetupError(f"{TIMEOUT_VARIABLE}={value!r}: expected a number of seconds > 0")
    return seconds


def join(world_size: int, device: torch.device) -> Processes:
    """Join the run's `world_size` processes (a no-op for one) and return this process's place.

    Raises `DistributedSetupError` when the environment was started for another number of processes
    or lacks torch's env:// variables."""
    global _control
    started = environment_world_size()
    if started != world_size:
        raise DistributedSetupError(f"world_size={world_size}: this process was started as one of {started} "
                                    "(WORLD_SIZE); a run's processes must number its world_size")
    if world_size == 1:
        return SINGLE
    missing = [name for name in ENV_VARIABLES if name not in os.environ]
    if missing:
        raise DistributedSetupError(f"world_size={world_size}: {', '.join(missing)} not set; start the run's "
                                    "processes with torchrun or an executor of the suite")
    backend = "nccl" if device.type == "cuda" else "gloo"
    timeout = datetime.timedelta(seconds=collective_timeout_s())
    if not dist.is_initialized():
        # device_id binds the default group to this process's GPU (`wrn.runtime.bind_device`): NCCL's
        # communicator and every barrier of the group use it, never the node's GPU 0.
        dist.init_process_group(backend, timeout=timeout, device_id=device if device.type == "cuda" else None)
        _control = dist.new_group(backend="gloo", timeout=timeout) if backend != "gloo" else dist.group.WORLD
    return Processes(dist.get_rank(), dist.get_world_size(), int(os.environ["LOCAL_RANK"]), backend)


def leave() -> None:
    """Leave the process group (at the end of a run, or when it fails)."""
    global _control
    if dist.is_initialized():
        dist.destroy_process_group()
    _control = None


def any_rank(flag: bool) -> bool:
    """True on every process when `flag` is True on any of them: how all ranks agree to stop at the
    same step boundary when one of them was signalled."""
    value = torch.tensor([int(flag)], dtype=torch.int32)
    dist.all_reduce(value, op=dist.ReduceOp.MAX, group=_control)
    return bool(value.item())


def sum_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of a CPU tensor over all ranks (a new tensor, on every rank)."""
    total = tensor.clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM, group=_control)
    return total


def gather_to_writer(obj: Any, processes: Processes) -> list[Any] | None:
    """Every rank's `obj`, in rank order, on rank 0 (None elsewhere)."""
    out = [None] * processes.world_size if processes.is_writer else None
    dist.gather_object(obj, out, dst=0, group=_control)
    return out


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Give every rank rank 0's buffers (batch-norm running statistics). DistributedDataParallel
    does so at the start of every training forward; the engine also does it before evaluating and
    checkpointing, so all ranks evaluate the model rank 0 saves."""
    for buffer in module.buffers():
        dist.broadcast(buffer, src=0)
