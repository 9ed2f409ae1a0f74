"""What /proc/cpuinfo says about this CPU, without torch: the dry run's estimate and the engine's
warning both need to know whether bf16 runs in hardware here."""

from __future__ import annotations

from pathlib import Path

# CPU features that compute bf16 in hardware, as /proc/cpuinfo names them: x86's AVX512-BF16 and AMX-BF16
# ("flags"), Arm's BF16 ("Features"). Without one, oneDNN emulates bf16 convolutions and matrix
# products through fp32 conversions, many times slower than fp32 itself (benchmarks/train_speed.py).
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (`NATIVE_BF16_FLAGS`); False where /proc/cpuinfo
    says otherwise or cannot be read."""
    return any(NATIVE_BF16_FLAGS & set(value.split()) for value in read_cpuinfo(("flags", "Features")))


def cpu_name() -> str:
    return next(iter(read_cpuinfo(("model name",))), "cpu")


def read_cpuinfo(keys: tuple[str, ...]) -> list[str]:
    """The values of the /proc/cpuinfo lines named one of `keys` (none where it cannot be read)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []
    return [value.strip() for key, sep, value in (line.partition(":") for line in lines)
            if sep and key.strip() in keys]
