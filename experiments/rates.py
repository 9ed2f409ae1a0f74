"""Measured training rates, kept where every later estimate finds them, and the rate of each run.

`<results>/rates.json` (`rates_folder`: `results/rates.json` unless --results names another folder, so
a group that launches into one folder on a cluster shares it) holds one row per device, compute mode
(`wrn.throughput.compute_mode`) and network: the training FLOP/s that `python -m benchmarks.gpu_check`
or `python -m benchmarks.train_speed` achieved, the device's name, the date and the source. It is
rewritten atomically under a lock, a new measurement of a key replacing the old one. Finished runs
are measurements too (`run_measurements`): their result's images per second over their processes.

`RateBook.rate` resolves the rate of one run in the order `python -m experiments.run --help` states:
a rate given by --device-tflops, then $WRN_DEVICE_TFLOPS, then a measurement of the run's network on
the device in the run's mode (else of the measured network nearest in size: small networks reach
fewer FLOP/s than large ones), then the assumption for the device (`wrn.throughput.assumed_rate`). The
device is the cluster profile's `gpu` for a SLURM launch, else this machine's GPU, else the default
the throughput model names; a CPU estimate is for this machine's CPU.
"""

from __future__ import annotations

import fcntl
import math
import os
import subprocess
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from experiments.profiles import Profile
from experiments.store import RunRecord
from wrn.config import RunConfig
from wrn.cpuinfo import cpu_name
from wrn.errors import UserError
from wrn.files import atomic_write_json, read_json
from wrn.throughput import DEFAULT_GPU, Rate, assumed_rate, compute_mode, device_class

RATES_FILE = "rates.json"
DEFAULT_RESULTS = "results"  # the folder of the paper profile's runs, and of every profile's rates
ENV_TFLOPS = "WRN_DEVICE_TFLOPS"


@dataclass(frozen=True)
class Measurement:
    """One achieved training rate: `tflops` per device of `device` in compute `mode`, training
    `network` (a label) on images of `image_size`, whose forward pass costs `forward_flops`."""

    device: str  # the name the device reports (torch, nvidia-smi; a CPU's model name)
    mode: str  # fp32, tf32 or bf16
    network: str
    image_size: int
    forward_flops: int
    tflops: float
    measured_at: str  # UTC, as every record of the suite writes times
    source: str  # "benchmarks.gpu_check", "benchmarks.train_speed", or "run <run id>"

    @property
    def device_key(self) -> str:
        """What the measurement is filed under: a known GPU's class ("NVIDIA A100-SXM4-80GB" is an
        A100), else the device's own name."""
        return device_key(self.device)

    @property
    def key(self) -> tuple[str, str, str, int]:
        return self.device_key, self.mode, self.network, self.image_size

    def describe(self) -> str:
        return f"measured on {self.device} ({self.network}, {self.measured_at[:10]}, {self.source})"


def device_key(name: str) -> str:
    return device_class(name) or name


def rates_path(results: Path | None) -> Path:
    """The rates file of a results folder; `results/rates.json` when none is named."""
    return Path(results if results is not None else DEFAULT_RESULTS) / RATES_FILE


def rates_folder(results: Path, profile: Profile) -> Path:
    """Where the rates of a launch into `results` under `profile` are kept: `results/` when `results` is
    the profile's default folder (results/ or results/<profile>/: one file for every profile, since a
    rate is of a device and a precision, not of a profile), else `results` itself."""
    if Path(results).absolute() == profile.default_results().absolute():
        return Path(DEFAULT_RESULTS).absolute()
    return Path(results)


def read_measurements(results: Path | None) -> list[Measurement]:
    """The measurements kept under `results` (none when it has no rates file)."""
    path = rates_path(results)
    if not path.is_file():
        return []
    try:
        rows = read_json(path)["measurements"]
        return [Measurement(**{f.name: row[f.name] for f in fields(Measurement)}) for row in rows]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UserError(f"{path}: not a rates file ({type(error).__name__}: {error}); remove it to start "
                        "a new one") from None


def record_measurements(results: Path | None, new: Iterable[Measurement]) -> Path:
    """Add `new` to the rates file of `results`, each replacing an earlier measurement of its key;
    atomic, and under a lock so that two benchmarks finishing at once both land."""
    path = rates_path(results)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(RATES_FILE + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        kept = {m.key: m for m in read_measurements(results)}
        kept.update({m.key: m for m in new})
        rows = sorted(kept.values(), key=lambda m: m.key)
        return atomic_write_json(path, {"measurements": [asdict(m) for m in rows]})


def run_measurements(records: Iterable[RunRecord]) -> list[Measurement]:
    """The achieved rate of every finished training run of `records`: its images per second times 3
    forward passes, over its processes."""
    out = []
    for rec in records:
        result = rec.result
        if rec.state != "done" or result is None or result.kind != "train" or not result.images_per_s:
            continue
        runtime = result.runtime
        mode = "bf16" if runtime.precision == "bf16" else "tf32" if runtime.tf32 and runtime.device == "cuda" else "fp32"
        tflops = 3 * result.flops * result.images_per_s / max(1, runtime.world_size) / 1e12
        out.append(Measurement(runtime.device_name, mode, rec.label or "", rec.config.image_size,
                               result.flops, tflops, rec.finished_at or "", f"run {rec.run_id}"))
    return out


def local_gpu_name() -> str | None:
    """This machine's first GPU as nvidia-smi names it (no torch import: dry runs stay fast); None
    without one."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return next((line.strip() for line in out.splitlines() if line.strip()), None)


class RateBook:
    """The rate of each run of one estimate: given, measured, or assumed for its device."""

    def __init__(self, device_type: str, device: str | None, measurements: list[Measurement],
                 given_tflops: float | None = None):
        """`device`: the GPU's name or class (None: the throughput model's default), or the CPU's model
        name (None: this machine's)."""
        self.device_type = device_type
        self.gpu = device if device_type == "cuda" else None
        self.device = device or (cpu_name() if device_type == "cpu" else DEFAULT_GPU)
        self.given = self._given(given_tflops)
        self.measurements = measurements
        # Filed once, so that each run's lookup costs no more than the store's distinct networks:
        # the latest of each network per mode, and the latest of each forward cost per mode.
        key = device_key(self.device)
        self._by_network: dict[tuple[str, str, int], Measurement] = {}
        self._by_flops: dict[str, dict[int, Measurement]] = {}
        for m in sorted(measurements, key=lambda m: m.measured_at):
            if m.device_key == key and m.tflops > 0:
                self._by_network[m.mode, m.network, m.image_size] = m
                self._by_flops.setdefault(m.mode, {})[m.forward_flops] = m

    @staticmethod
    def _given(tflops: float | None) -> Rate | None:
        if tflops is not None:
            return Rate(tflops * 1e12, f"given by --device-tflops {tflops:g}")
        text = os.environ.get(ENV_TFLOPS)
        if not text:
            return None
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value > 0):
            raise UserError(f"{ENV_TFLOPS}={text!r}: expected a number > 0 (sustained training TFLOP/s)")
        return Rate(value * 1e12, f"given by {ENV_TFLOPS}={text}")

    def rate(self, config: RunConfig, label: str, forward_flops: int) -> Rate:
        """The rate `config` (network `label`, `forward_flops` per image) trains at on this book's device."""
        if self.given is not None:
            return self.given
        mode = compute_mode(config, self.device_type)
        found = self.measured(mode, label, config.image_size, forward_flops)
        return found if found is not None else assumed_rate(self.device_type, self.gpu, mode)

    def measured(self, mode: str, label: str, image_size: int, forward_flops: int) -> Rate | None:
        """The latest measurement of this network on this device in `mode`, else the one of the
        network nearest in forward FLOPs (log scale); None when the device has none in `mode`."""
        same = self._by_network.get((mode, label, image_size))
        if same is not None:
            return Rate(same.tflops * 1e12, same.describe())
        by_flops = self._by_flops.get(mode)
        if not by_flops:
            return None
        def distance(flops: int) -> float:
            return abs(math.log(max(1, flops) / max(1, forward_flops)))
        nearest = min(map(distance, by_flops))
        near = max((m for flops, m in by_flops.items() if distance(flops) == nearest), key=lambda m: m.measured_at)
        return Rate(near.tflops * 1e12, f"{near.describe()}, the measured network nearest in size to {label}")
