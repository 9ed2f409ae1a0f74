"""A stand-in for CUDA on a machine without a GPU: a node of N GPUs that compute on the CPU.

`CudaStandIn(n).install()` makes this process see the GPUs of CUDA_VISIBLE_DEVICES (all n when it is
unset), as a process of a real node would:

- torch.cuda and torch.accelerator answer as CUDA would (is_available, device_count, the current
  device and `torch.cuda.device`, device names, synchronize, one generator state per GPU);
- every tensor asked for on cuda:i (a `device=` argument, `.to`, `.cuda`, a module's `.to`) is made
  on the CPU instead, through a TorchFunctionMode entered in this thread and in every thread started
  later (the SLURM job trains in one), and `pin_memory()` returns the tensor itself;
- NCCL process groups become gloo and DistributedDataParallel's device ids are dropped, so ranks
  really train together over gloo;
- `torch.cuda.set_sync_debug_mode("error")` makes `torch.cuda.synchronize` raise, as CUDA's does; the
  memory statistics read zero; `torch.cuda.Event` times with the host's clock.

What each process asked of which *physical* GPU (the index on the node, before CUDA_VISIBLE_DEVICES
renumbers) is recorded: `events` in the process, and one JSON line per new (event, GPU) pair in the
file of WRN_TEST_CUDA_LOG when it is set. So a test can check, rank by rank, which GPU a process bound,
placed its tensors on, joined NCCL with and handed to DistributedDataParallel. Kernels, streams and
NCCL itself are not simulated: `python -m benchmarks.gpu_check` checks those on a GPU.

Started processes get it through tests/hooks/sitecustomize.py: WRN_TEST_FAKE_CUDA=<n> on the
environment of a process whose PYTHONPATH holds tests/hooks.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from typing import Any

import torch
import torch.distributed as dist
from torch.overrides import TorchFunctionMode

NAME = "Stand-in GPU"


class _PlaceOnCpu(TorchFunctionMode):
    """Turns every cuda device argument of a torch call into the CPU, telling the stand-in which GPU
    it named."""

    def __init__(self, standin: CudaStandIn):
        super().__init__()
        self.standin = standin

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        name = getattr(func, "__name__", "")
        if name == "pin_memory":
            self.standin.record("pin", self.standin.physical(None))
            return args[0]
        if name == "is_pinned":
            return True
        if "device" in kwargs:
            kwargs["device"] = self.standin.on_cpu(kwargs["device"], "tensor")
        if name in ("to", "cuda"):
            args = tuple(self.standin.on_cpu(a, "tensor") if _names_device(a) else a for a in args)
            if name == "cuda":
                self.standin.record("tensor", self.standin.physical(args[1] if len(args) > 1 else None))
                return args[0]
        return func(*args, **kwargs)


class _Event:
    """torch.cuda.Event on the host's clock (the stand-in's work is done when it is queued)."""

    def __init__(self, enable_timing: bool = False, **_: Any):
        self.at: float | None = None

    def record(self, stream: Any = None) -> None:
        self.at = time.perf_counter()

    def synchronize(self) -> None:
        pass

    def elapsed_time(self, end: _Event) -> float:
        return 1000 * (end.at - self.at)


def _names_device(value: Any) -> bool:
    return isinstance(value, torch.device) or (isinstance(value, str) and value.split(":")[0] in ("cuda", "cpu"))


class CudaStandIn:
    """N GPUs on a node, seen through this process's CUDA_VISIBLE_DEVICES."""

    def __init__(self, n: int, log_path: str | None = None):
        self.n = n
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        self.visible = list(range(n)) if visible is None else [int(v) for v in visible.split(",") if v != ""]
        if any(not 0 <= g < n for g in self.visible):
            raise ValueError(f"CUDA_VISIBLE_DEVICES={visible}: this stand-in node has GPUs 0..{n - 1}")
        self.current = 0
        self.sync_debug = 0
        self.log_path = log_path
        self.events: list[dict[str, Any]] = []
        self.rng = {g: torch.tensor([g, 0], dtype=torch.uint8) for g in range(n)}  # per physical GPU
        self._seen: set[tuple[str, int]] = set()

    # -- bookkeeping -------------------------------------------------------------------------------
    def logical(self, device: Any) -> int:
        """The visible index a device argument names (the current device when it names none)."""
        if device is None:
            return self.current
        if isinstance(device, int):
            return device
        device = torch.device(device)
        if device.type != "cuda":
            raise ValueError(f"{device}: not a CUDA device")
        return self.current if device.index is None else device.index

    def physical(self, device: Any) -> int:
        index = self.logical(device)
        if not 0 <= index < len(self.visible):
            raise RuntimeError(f"CUDA error: invalid device ordinal {index} ({len(self.visible)} visible)")
        return self.visible[index]

    def record(self, event: str, gpu: int, **detail: Any) -> None:
        entry = {"event": event, "gpu": gpu, "pid": os.getpid(), "rank": os.environ.get("RANK"), **detail}
        self.events.append(entry)
        if self.log_path and (event, gpu) not in self._seen:
            self._seen.add((event, gpu))
            with open(self.log_path, "a") as log:
                log.write(json.dumps(entry) + "\n")

    def on_cpu(self, device: Any, event: str) -> Any:
        """The CPU for a CUDA device argument (recorded), anything else as it is."""
        if device is None or isinstance(device, int) or torch.device(device).type != "cuda":
            return device
        self.record(event, self.physical(device))
        return torch.device("cpu")

    def gpus(self, event: str) -> set[int]:
        return {e["gpu"] for e in self.events if e["event"] == event}

    # -- torch.cuda --------------------------------------------------------------------------------
    def set_device(self, device: Any) -> None:
        self.physical(device)  # an invalid ordinal fails as CUDA would
        self.current = self.logical(device)
        self.record("set_device", self.visible[self.current])

    @contextlib.contextmanager
    def device_context(self, device: Any):
        previous = self.current
        self.set_device(device)
        try:
            yield
        finally:
            self.current = previous

    def get_rng_state(self, device: Any = "cuda") -> torch.Tensor:
        gpu = self.physical(device)
        self.record("rng_get", gpu)
        return self.rng[gpu].clone()

    def set_rng_state(self, state: torch.Tensor, device: Any = "cuda") -> None:
        gpu = self.physical(device)
        self.record("rng_set", gpu, state=state.tolist())
        self.rng[gpu] = state.clone()

    def get_rng_state_all(self) -> list[torch.Tensor]:
        return [self.get_rng_state(i) for i in range(len(self.visible))]

    def set_rng_state_all(self, states: list[torch.Tensor]) -> None:
        for i, state in enumerate(states):
            self.set_rng_state(state, i)

    def manual_seed_all(self, seed: int) -> None:
        for gpu in self.visible:
            self.rng[gpu] = torch.tensor([gpu, seed % 256], dtype=torch.uint8)

    def get_device_name(self, device: Any = None) -> str:
        return f"{NAME} {self.physical(device)}"

    def set_sync_debug_mode(self, mode: int | str) -> None:
        self.sync_debug = {"default": 0, "warn": 1, "error": 2}.get(mode, mode)
        self.record("sync_debug_mode", self.visible[self.current], mode=self.sync_debug)

    def synchronize(self, device: Any = None) -> None:
        if self.sync_debug == 2:
            raise RuntimeError("called a synchronizing CUDA operation")
        self.record("synchronize", self.physical(device))

    # -- torch.distributed ------------------------------------------------------------------------
    def init_process_group(self, backend: str | None = None, *args, device_id: Any = None, **kwargs):
        if device_id is not None:
            self.record("init_process_group", self.physical(device_id))
        return _REAL["init_process_group"]("gloo" if backend in (None, "nccl") else backend, *args, **kwargs)

    def distributed_data_parallel(self, module, device_ids=None, *args, **kwargs):
        for d in device_ids or []:
            self.record("ddp", self.physical(d))
        return _REAL["DistributedDataParallel"](module, None, *args, **kwargs)

    # -- installing ---------------------------------------------------------------------------------
    def install(self) -> CudaStandIn:
        """Patch torch for the rest of this process (or until `uninstall`)."""
        cuda = torch.cuda
        self._saved = [(cuda, name, getattr(cuda, name)) for name in _CUDA_NAMES]
        self._saved += [(dist, "init_process_group", dist.init_process_group),
                        (torch.nn.parallel, "DistributedDataParallel", torch.nn.parallel.DistributedDataParallel)]
        replacements = {
            "is_available": lambda: True, "device_count": lambda: len(self.visible),
            "current_device": lambda: self.current, "set_device": self.set_device, "device": self.device_context,
            "get_rng_state": self.get_rng_state, "set_rng_state": self.set_rng_state,
            "get_rng_state_all": self.get_rng_state_all, "set_rng_state_all": self.set_rng_state_all,
            "manual_seed_all": self.manual_seed_all, "synchronize": self.synchronize,
            "get_device_name": self.get_device_name, "is_initialized": lambda: True,
            "is_bf16_supported": lambda *a, **k: True, "set_sync_debug_mode": self.set_sync_debug_mode,
            "get_sync_debug_mode": lambda: self.sync_debug, "reset_peak_memory_stats": lambda *a, **k: None,
            "max_memory_allocated": lambda *a, **k: 0, "Event": _Event,
            "get_device_capability": lambda *a, **k: (9, 0),
        }
        for name, value in replacements.items():
            setattr(cuda, name, value)
        accelerator = torch.accelerator  # what the DataLoader's pinning thread asks
        self._saved += [(accelerator, name, getattr(accelerator, name)) for name in _ACCELERATOR_NAMES]
        accelerator.is_available = lambda: True
        accelerator.device_count = lambda: len(self.visible)
        accelerator.current_accelerator = lambda *a, **k: torch.device("cuda")
        accelerator.current_device_index = lambda: self.current
        accelerator.set_device_index = self.set_device
        dist.init_process_group = self.init_process_group
        torch.nn.parallel.DistributedDataParallel = self.distributed_data_parallel
        self._saved.append((threading.Thread, "run", threading.Thread.run))
        threading.Thread.run = self._thread_run(threading.Thread.run)
        self._mode = _PlaceOnCpu(self)
        self._mode.__enter__()
        return self

    def _thread_run(self, real_run):
        """Thread.run inside a mode of its own: torch function modes are per thread."""
        standin = self

        def run(thread: threading.Thread) -> None:
            with _PlaceOnCpu(standin):
                real_run(thread)

        return run

    def uninstall(self) -> None:
        self._mode.__exit__(None, None, None)
        for owner, name, value in self._saved:
            setattr(owner, name, value)


_CUDA_NAMES = ("is_available", "device_count", "current_device", "set_device", "device", "get_rng_state",
               "set_rng_state", "get_rng_state_all", "set_rng_state_all", "manual_seed_all", "synchronize",
               "get_device_name", "is_initialized", "is_bf16_supported", "set_sync_debug_mode", "get_sync_debug_mode",
               "reset_peak_memory_stats", "max_memory_allocated", "Event", "get_device_capability")
_ACCELERATOR_NAMES = ("is_available", "device_count", "current_accelerator", "current_device_index",
                      "set_device_index")
_REAL = {"init_process_group": dist.init_process_group,
         "DistributedDataParallel": torch.nn.parallel.DistributedDataParallel}


def read_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The events a WRN_TEST_CUDA_LOG file holds, from every process that wrote to it."""
    with open(path) as log:
        return [json.loads(line) for line in log if line.strip()]
